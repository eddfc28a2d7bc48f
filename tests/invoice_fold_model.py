"""The plainest possible invoice fold: a dict from ID to what is held, every result
recomputed from it on demand. The property tests hold the compact `InvoiceFold` to it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from simpro_counter.metrics import InvoiceEntry, InvoiceFilter
from simpro_counter.metrics.invoices import parse_invoice


class ModelFold:
    """ID -> entry (None: seen, left out by the filter); nothing cached, nothing clever."""

    def __init__(self, invoice_filter: InvoiceFilter | None = None) -> None:
        self.filter = invoice_filter or InvoiceFilter()
        self.held: dict[int, InvoiceEntry | None] = {}

    def add(self, record: Mapping[str, object]) -> bool:
        invoice_id, entry = parse_invoice(record, self.filter)
        self.held[invoice_id] = entry
        return entry is not None

    def remove(self, invoice_id: int) -> bool:
        return self.held.pop(invoice_id, "absent") != "absent"

    def counted(self) -> dict[int, InvoiceEntry]:
        return {i: entry for i, entry in self.held.items() if entry is not None}

    def customers(self) -> int:
        return len({c for c, _, _ in self.counted().values() if c is not None})

    def invoices(self) -> int:
        return len(self.counted())

    def invoices_without_customer(self) -> int:
        return sum(1 for c, _, _ in self.counted().values() if c is None)

    def revenue_cents(self) -> int:
        return sum(cents for _, cents, _ in self.counted().values())

    def first_invoice_date_by_customer(self) -> dict[int, date]:
        first: dict[int, date] = {}
        for customer, _, issued in self.counted().values():
            if customer is not None and issued is not None:
                first[customer] = min(first.get(customer, issued), issued)
        return first

    def ids(self) -> list[int]:
        return sorted(self.held)
