"""Folding invoice records into customers, invoices and revenue, in one pass.

An :class:`InvoiceFold` is keyed by invoice ID: reading an invoice twice counts it once,
adding it again replaces what was known (it moved to another customer, was re-priced, or
left the filter), and :meth:`InvoiceFold.remove` forgets a deleted one. So the same fold
serves a full scan (pages may overlap when re-read) and incremental updates (webhooks,
`If-Modified-Since` catch-ups).

Reading one record is the pure :func:`parse_invoice` (ID and entry under a filter), which
the fold uses and so does whatever applies an invoice to the ledger without a fold (the
webhook worker).

Records are the dicts Simpro returns: IDs may be ints or strings (`52` and `"52"` are one
record), `Customer` may be null (such invoices count as invoices and revenue, not as a
customer), money is a JSON number such as `735.34` and is read with `Decimal(str(value))`
so that binary floating point never enters a sum.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from simpro_counter.errors import SimproDataError
from simpro_counter.ids import parse_id
from simpro_counter.metrics.invoice_table import MISSING, InvoiceTable, Previous, Row

CENT = Decimal("0.01")
# No real invoice comes near ten trillion; an amount beyond it is broken data, refused
# with a message rather than carried into sums (Redis counters are 64-bit).
MAX_AMOUNT = Decimal(10) ** 13

# One invoice as the fold keeps it: (customer ID or None, ex-tax cents, date issued or None).
InvoiceEntry = tuple[int | None, int, date | None]


@dataclass(frozen=True)
class InvoiceFilter:
    """Which invoices count, by `Type` and `Stage`; None means every value.

    The default counts every invoice: all types (TaxInvoice, Deposit, ProgressInvoice,
    RequestForClaim, and any a build adds) and all stages (Approved, Pending). That is what
    "customers ever invoiced" meant in the original, and it keeps the invoice count equal
    to Simpro's `Result-Total` for the list, which is how a scan proves it is complete.
    A deployment that wants e.g. approved revenue only sets `stages=frozenset({"Approved"})`;
    the scan must then ask for the `Stage` column (``scan_columns()`` always does).
    """

    types: frozenset[str] | None = None
    stages: frozenset[str] | None = None

    @classmethod
    def of(
        cls, *, types: Collection[str] | None = None, stages: Collection[str] | None = None
    ) -> InvoiceFilter:
        return cls(
            types=None if types is None else frozenset(types),
            stages=None if stages is None else frozenset(stages),
        )

    @property
    def counts_everything(self) -> bool:
        return self.types is None and self.stages is None

    def describe(self) -> str:
        """A stable text of the filter, e.g. `types=*;stages=Approved` (kept with values,
        so a ledger built under another filter is never updated under this one)."""

        def names(allowed: frozenset[str] | None) -> str:
            return "*" if allowed is None else ",".join(sorted(allowed))

        return f"types={names(self.types)};stages={names(self.stages)}"

    def accepts(self, record: Mapping[str, object], invoice_id: int) -> bool:
        return _allowed(record, "Type", self.types, invoice_id) and _allowed(
            record, "Stage", self.stages, invoice_id
        )


def _allowed(
    record: Mapping[str, object], field: str, allowed: frozenset[str] | None, invoice_id: int
) -> bool:
    if allowed is None:
        return True
    if field not in record:
        raise SimproDataError(
            f"invoice {invoice_id} has no {field} field, so the invoice filter cannot be "
            f"applied (ask for the {field} column)"
        )
    value = record[field]
    if not isinstance(value, str):
        raise SimproDataError(f"invoice {invoice_id}: {field} is {value!r}, not a string")
    return value in allowed


class InvoiceFold:
    """Customers, invoices and revenue over a set of invoices keyed by ID.

    Every invoice added is held, counted or not: an invoice the filter leaves out is held
    as "not counted", so `len(fold)` is the number of distinct invoices seen, which a scan
    compares with Simpro's `Result-Total` to prove it is complete, while
    :meth:`invoices` counts only those that pass the filter.

    Memory: per invoice the fold keeps only its ID, customer ID, ex-tax cents, day issued
    and whether it counts, in the fixed-width columns of an
    :class:`~simpro_counter.metrics.invoice_table.InvoiceTable` (29 bytes plus growth
    slack), and per distinct customer one dict entry (its number of invoices held):
    measured with tracemalloc at 32 bytes per invoice over 100,000 invoices and 5,000
    customers (see tests/test_metrics_invoices.py and bench/scan_memory.py). The records
    themselves are not kept.

    Adding is O(log n) (O(1) for a new highest ID); :meth:`customers`, :meth:`invoices`
    and :meth:`revenue` are O(1); :meth:`first_invoice_date_by_customer` is O(invoices).
    Do not change the fold while iterating :meth:`counted`. `storage` is for tests (an
    `InvoiceTable` with small thresholds takes every storage path on small inputs).
    """

    def __init__(
        self, invoice_filter: InvoiceFilter | None = None, *, storage: InvoiceTable | None = None
    ) -> None:
        self.filter = invoice_filter or InvoiceFilter()
        self._table = InvoiceTable() if storage is None else storage
        self._invoices_of: dict[int, int] = {}  # customer ID -> number of its invoices held
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
        """:func:`parse_invoice` under this fold's filter (nothing changes)."""
        return parse_invoice(record, self.filter, where)

    def put(self, invoice_id: int, entry: InvoiceEntry | None) -> None:
        """Hold `entry` for the invoice, replacing what was held (None: not counted)."""
        row: Row | None = None
        if entry is not None:
            customer, cents, issued = entry
            row = (customer, cents, None if issued is None else issued.toordinal())
        self._forget(self._table.put(invoice_id, row))
        if row is None:
            return
        customer = row[0]
        self._counted += 1
        self._cents += row[1]
        if customer is None:
            self._without_customer += 1
        else:
            self._invoices_of[customer] = self._invoices_of.get(customer, 0) + 1

    def add_all(self, records: Iterable[Mapping[str, object]], where: str = "invoice") -> int:
        """Apply every record; how many counted."""
        return sum(self.add(record, where) for record in records)

    def remove(self, invoice_id: int) -> bool:
        """Forget a (deleted) invoice; False when it was not held."""
        previous = self._table.pop(invoice_id)
        self._forget(previous)
        return previous is not MISSING

    def _forget(self, previous: Previous) -> None:
        """Take an invoice no longer held out of the totals."""
        if previous is None or previous is MISSING:
            return
        customer, cents, _ = previous
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
        first: dict[int, int] = {}
        for customer, day in self._table.counted_customer_days():
            known = first.get(customer)
            if known is None or day < known:
                first[customer] = day
        return {customer: date.fromordinal(day) for customer, day in first.items()}

    def undated_customers(self) -> int:
        return self.customers() - len(self.first_invoice_date_by_customer())

    def __len__(self) -> int:
        """Distinct invoices held, counted or not (what Simpro's Result-Total counts)."""
        return len(self._table)

    def __contains__(self, invoice_id: object) -> bool:
        return invoice_id in self._table

    def ids(self) -> list[int]:
        """The invoice IDs held (counted or not), ascending."""
        return self._table.ids_between()

    def ids_between(self, low: int | None, high: int | None) -> list[int]:
        """The invoice IDs held from `low` to `high` (inclusive; None: unbounded), ascending.

        Cheaper than filtering :meth:`ids`: only the range is copied out.
        """
        return self._table.ids_between(low, high)

    def count_above(self, invoice_id: int) -> int:
        """How many invoices held have an ID greater than `invoice_id` (e.g. created
        since the scan began), without copying the IDs out."""
        return self._table.count_above(invoice_id)

    def counted(self) -> CountedInvoices:
        """(invoice ID, entry) of every counted invoice, ascending by ID; iterable more
        than once (the ledger rebuild reads it twice rather than copy it)."""
        return CountedInvoices(self._table)


class CountedInvoices:
    """The counted invoices of a fold, read from its table afresh on each iteration."""

    def __init__(self, table: InvoiceTable) -> None:
        self._table = table

    def __iter__(self) -> Iterator[tuple[int, InvoiceEntry]]:
        dates: dict[int, date] = {}  # one date object per day, however many invoices
        for invoice_id, row in self._table.items():
            if row is None:
                continue
            customer, cents, day = row
            issued = None
            if day is not None:
                issued = dates.get(day)
                if issued is None:
                    issued = dates[day] = date.fromordinal(day)
            yield invoice_id, (customer, cents, issued)


def parse_invoice(
    record: Mapping[str, object], invoice_filter: InvoiceFilter, where: str = "invoice"
) -> tuple[int, InvoiceEntry | None]:
    """The invoice's ID and what a fold or the ledger keeps of it (None: the filter leaves
    it out); :class:`SimproDataError` saying what is wrong. Pure: nothing is kept.

    `where` names the source in error messages (e.g. "invoices page 3").
    """
    invoice_id = parse_id(record.get("ID"), what=f"{where}: invoice ID")
    if not invoice_filter.accepts(record, invoice_id):
        return invoice_id, None
    customer = _customer_id(record, invoice_id)
    cents = ex_tax_cents(record, invoice_id)
    issued = _date_issued(record, invoice_id)
    return invoice_id, (customer, cents, issued)


def _customer_id(record: Mapping[str, object], invoice_id: int) -> int | None:
    """`Customer.ID`, or None for an invoice without a customer."""
    if "Customer" not in record:
        raise SimproDataError(
            f"invoice {invoice_id} has no Customer field (ask for the Customer column)"
        )
    customer = record["Customer"]
    if customer is None:
        return None
    if not isinstance(customer, Mapping):
        raise SimproDataError(f"invoice {invoice_id}: Customer is {customer!r}, not an object")
    return parse_id(customer.get("ID"), what=f"invoice {invoice_id}: Customer.ID")


def _date_issued(record: Mapping[str, object], invoice_id: int) -> date | None:
    """`DateIssued`, or None when Simpro sent null or the column was not asked for."""
    value = record.get("DateIssued")
    if value is None:
        return None
    if not isinstance(value, str):
        raise SimproDataError(f"invoice {invoice_id}: DateIssued is {value!r}, not a date")
    return parse_date(value, invoice_id)


def ex_tax_cents(record: Mapping[str, object], invoice_id: int) -> int:
    """`Total.ExTax` in whole cents, read exactly; SimproDataError saying what is wrong.

    Simpro amounts have two decimal places; a value with more is rounded half up to the
    cent per invoice (as an accounting system does), so a sum is always whole cents.
    """
    if "Total" not in record:
        raise SimproDataError(f"invoice {invoice_id} has no Total field (ask for the Total column)")
    total = record["Total"]
    if not isinstance(total, Mapping):
        raise SimproDataError(f"invoice {invoice_id}: Total is {total!r}, not an object")
    if "ExTax" not in total:
        raise SimproDataError(f"invoice {invoice_id}: Total has no ExTax")
    value = total["ExTax"]
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise SimproDataError(f"invoice {invoice_id}: Total.ExTax is {value!r}, not a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise SimproDataError(
            f"invoice {invoice_id}: Total.ExTax is {value!r}, not a number"
        ) from None
    if not amount.is_finite():
        raise SimproDataError(
            f"invoice {invoice_id}: Total.ExTax is {value!r}, not a finite number"
        )
    if abs(amount) >= MAX_AMOUNT:
        raise SimproDataError(
            f"invoice {invoice_id}: Total.ExTax is {value!r}, beyond any real invoice "
            f"(limit {MAX_AMOUNT:,})"
        )
    return int(amount.quantize(CENT, rounding=ROUND_HALF_UP).scaleb(2))


def parse_date(value: str, invoice_id: int) -> date:
    """`2024-03-05` (a trailing time such as `T00:00:00+10:00` is ignored)."""
    text = value.strip()
    if len(text) > 10 and text[10] not in "T ":
        text = ""  # e.g. "2024-03-051": not a date
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise SimproDataError(
            f"invoice {invoice_id}: DateIssued is {value!r}, not a date (YYYY-MM-DD)"
        ) from None
