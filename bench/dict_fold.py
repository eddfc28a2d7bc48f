"""The invoice fold before its compact storage (a dict of Python tuples), kept only so that
`bench/scan_memory.py` can measure the compact fold against it in the same run.

Copied from `simpro_counter/metrics/invoices.py` at the commit before the compact storage;
not used by the service.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from decimal import Decimal

from simpro_counter.metrics.invoices import (
    CENT,
    InvoiceEntry,
    InvoiceFilter,
    parse_invoice,
)


class DictInvoiceFold:
    """Customers, invoices and revenue over a set of invoices keyed by ID.

    Every invoice added is held, counted or not: an invoice the filter leaves out is held
    as `None`, so `len(fold)` is the number of distinct invoices seen, which a scan
    compares with Simpro's `Result-Total` to prove it is complete, while
    :meth:`invoices` counts only those that pass the filter.

    Memory: per invoice the fold keeps only a dict entry `ID -> (customer ID, ex-tax cents,
    date issued)`. Customer IDs and dates are interned (one object per distinct customer or
    day, shared by all its invoices), so the cost per invoice is the dict slot, the key int,
    the 3-tuple and the cents int: measured with tracemalloc at 186 bytes per invoice over
    100,000 invoices (18.6 MB, 5,000 customers), see tests/test_metrics_invoices.py. The
    records themselves are not kept.

    Adding is O(1); :meth:`customers`, :meth:`invoices` and :meth:`revenue` are O(1);
    :meth:`first_invoice_date_by_customer` is O(invoices).
    """

    def __init__(self, invoice_filter: InvoiceFilter | None = None) -> None:
        self.filter = invoice_filter or InvoiceFilter()
        self._invoices: dict[int, InvoiceEntry | None] = {}  # None: seen, left out by the filter
        self._invoices_of: dict[int, int] = {}  # customer ID -> number of its invoices held
        self._dates: dict[date, date] = {}  # interning: one date object per day
        self._customer_ids: dict[int, int] = {}  # interning: one int object per customer
        self._cents = 0
        self._without_customer = 0
        self._counted = 0

    # --- feeding ---------------------------------------------------------------------

    def add(self, record: Mapping[str, object], where: str = "invoice") -> bool:
        """Apply one invoice record; True when it counts, False when the filter leaves it out.

        Adding an ID already held replaces it; a record the filter rejects replaces an
        earlier version with "held, not counted" (the invoice left the filter, e.g. its
        stage changed). Everything is validated before anything changes: on
        :class:`SimproDataError` the fold is as before. `where` names the source in error
        messages (e.g. "invoices page 3").
        """
        invoice_id, entry = self.parse(record, where)
        self.put(invoice_id, entry)
        return entry is not None

    def parse(
        self, record: Mapping[str, object], where: str = "invoice"
    ) -> tuple[int, InvoiceEntry | None]:
        """:func:`parse_invoice` under this fold's filter, with customer IDs and dates
        interned (one object per customer or day, shared by all its invoices)."""
        invoice_id, entry = parse_invoice(record, self.filter, where)
        if entry is None:
            return invoice_id, None
        customer, cents, issued = entry
        if customer is not None:
            customer = self._customer_ids.setdefault(customer, customer)
        if issued is not None:
            issued = self._dates.setdefault(issued, issued)
        return invoice_id, (customer, cents, issued)

    def put(self, invoice_id: int, entry: InvoiceEntry | None) -> None:
        """Hold `entry` for the invoice, replacing what was held (None: not counted)."""
        self.remove(invoice_id)
        self._invoices[invoice_id] = entry
        if entry is None:
            return
        customer, cents, _ = entry
        self._counted += 1
        self._cents += cents
        if customer is None:
            self._without_customer += 1
        else:
            self._invoices_of[customer] = self._invoices_of.get(customer, 0) + 1

    def add_all(self, records: Iterable[Mapping[str, object]], where: str = "invoice") -> int:
        """Apply every record; how many counted."""
        return sum(self.add(record, where) for record in records)

    def remove(self, invoice_id: int) -> bool:
        """Forget a (deleted) invoice; False when it was not held."""
        if invoice_id not in self._invoices:
            return False
        entry = self._invoices.pop(invoice_id)
        if entry is None:
            return True
        customer, cents, _ = entry
        self._counted -= 1
        self._cents -= cents
        if customer is None:
            self._without_customer -= 1
        else:
            left = self._invoices_of[customer] - 1
            if left:
                self._invoices_of[customer] = left
            else:
                del self._invoices_of[customer]
        return True

    # --- results ---------------------------------------------------------------------

    def customers(self) -> int:
        """Distinct customers over the invoices held (invoices without one ignored)."""
        return len(self._invoices_of)

    def invoices(self) -> int:
        """Distinct invoices counted (held and passing the filter)."""
        return self._counted

    def invoices_without_customer(self) -> int:
        return self._without_customer

    def revenue(self) -> Decimal:
        """Sum of `Total.ExTax`, exact, with two decimal places (e.g. `Decimal("0.00")`)."""
        return Decimal(self._cents).scaleb(-2).quantize(CENT)

    def revenue_cents(self) -> int:
        return self._cents

    def first_invoice_date_by_customer(self) -> dict[int, date]:
        """Each customer's earliest `DateIssued`.

        Invoices without a date (the column was not asked for, or Simpro sent null) are
        skipped; a customer all of whose invoices lack a date is left out, so
        :meth:`undated_customers` tells how many customers the history cannot place.
        """
        first: dict[int, date] = {}
        for entry in self._invoices.values():
            if entry is None:
                continue
            customer, _, issued = entry
            if customer is None or issued is None:
                continue
            known = first.get(customer)
            if known is None or issued < known:
                first[customer] = issued
        return first

    def undated_customers(self) -> int:
        return self.customers() - len(self.first_invoice_date_by_customer())

    def __len__(self) -> int:
        """Distinct invoices held, counted or not (what Simpro's Result-Total counts)."""
        return len(self._invoices)

    def __contains__(self, invoice_id: object) -> bool:
        return invoice_id in self._invoices

    def ids(self) -> list[int]:
        """The invoice IDs held (counted or not), ascending."""
        return sorted(self._invoices)

    def counted(self) -> Iterator[tuple[int, InvoiceEntry]]:
        """(invoice ID, entry) of every counted invoice, in no particular order."""
        for invoice_id, entry in self._invoices.items():
            if entry is not None:
                yield invoice_id, entry
