"""Reads of a whole invoice ledger that only the tests need, to compare it with a model.

They read every bucket, so they are for checks, never for hot paths; the service reads
the ledger through `InvoiceLedgerStore` alone.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from simpro_counter.keys import slot_id
from simpro_counter.metrics.invoices import InvoiceEntry
from simpro_counter.store.ledger import InvoiceLedgerStore, decode_customer


async def read_entries(ledger: InvoiceLedgerStore) -> dict[int, InvoiceEntry]:
    """Every invoice counted and its entry."""
    return {invoice: entry async for invoice, entry in ledger.entries()}


async def read_customer_of(ledger: InvoiceLedgerStore) -> dict[int, int | None]:
    """Invoice -> customer over every invoice counted."""
    return {invoice: entry[0] for invoice, entry in (await read_entries(ledger)).items()}


async def read_customer_values(ledger: InvoiceLedgerStore) -> dict[int, str]:
    """Customer -> its raw value (`n|days`), from its bucket or from `customer_long`; a
    customer found in both places fails the check."""
    k = ledger.keys
    values: dict[int, str] = {}
    for bucket in sorted(str(b) for b in await ledger.client.smembers(k.customer_buckets)):
        for field, value in (await ledger.client.hgetall(f"{k.customer_bucket}:{bucket}")).items():
            values[slot_id(bucket, str(field))] = str(value)
    for customer, value in (await ledger.client.hgetall(k.customer_long)).items():
        assert int(customer) not in values, f"customer {int(customer)} is kept twice"
        values[int(customer)] = str(value)
    return values


async def read_customers(ledger: InvoiceLedgerStore) -> dict[int, tuple[int, Counter[date]]]:
    """Customer -> (its number of invoices, the days of its dated ones)."""
    return {c: decode_customer(v) for c, v in (await read_customer_values(ledger)).items()}


async def read_first_invoice_dates(ledger: InvoiceLedgerStore) -> dict[int, date]:
    """Each customer's earliest invoice date, as the ledger keeps it. Customers without a
    dated invoice are left out."""
    return {
        customer: min(days)
        for customer, (_, days) in (await read_customers(ledger)).items()
        if days
    }
