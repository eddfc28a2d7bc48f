"""Reads of a whole invoice ledger that only the tests need, to compare it with a model.

They HSCAN every field, so they are for checks, never for hot paths; the service reads
the ledger through `InvoiceLedgerStore` alone.
"""

from __future__ import annotations

from datetime import date

from simpro_counter.metrics.invoices import InvoiceEntry
from simpro_counter.store.ledger import InvoiceLedgerStore, decode_entry


async def read_entries(
    ledger: InvoiceLedgerStore, *, batch: int = 2_000
) -> dict[int, InvoiceEntry]:
    """Every invoice counted and its entry (HSCAN in batches, so Redis is never blocked
    for long)."""
    found: dict[int, InvoiceEntry] = {}
    async for invoice, text in ledger.client.hscan_iter(ledger.keys.invoice_entries, count=batch):
        found[int(invoice)] = decode_entry(text)
    return found


async def read_customer_of(ledger: InvoiceLedgerStore) -> dict[int, int | None]:
    """Invoice -> customer over every invoice counted."""
    return {invoice: entry[0] for invoice, entry in (await read_entries(ledger)).items()}


async def read_first_invoice_dates(ledger: InvoiceLedgerStore) -> dict[int, date]:
    """Each customer's earliest invoice date, as the ledger keeps it (`customer_days`).
    Customers without a dated invoice are left out."""
    first: dict[int, date] = {}
    async for customer, days in ledger.client.hscan_iter(ledger.keys.customer_days, count=2_000):
        first[int(customer)] = date.fromisoformat(days.split("=", 1)[0])
    return first
