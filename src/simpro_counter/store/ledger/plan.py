"""What a rebuild writes, computed from a full scan's invoices in two streaming passes.

Pure Python (no Redis). A large build must not be held twice in the process (the scan's
fold holds it already, about 36 bytes per invoice), so the new ledger is never
materialised whole; the entries are read twice instead:

1. `LedgerSurvey` reads every entry once: it checks it (an amount no counter can hold
   raises ValueError here, before any temporary key exists), adds up the counts, and
   keeps per customer only the day numbers of its invoices, in an `array` (4 bytes per
   invoice, plus about 150 per customer). From those come the customer values (in
   customer ID order, `customer_batches`) and the first days.
2. `entry_batches` reads the entries again and encodes them a batch at a time, grouped
   into their buckets, so at most about `fields_per_batch` encoded entries exist at once;
   the store writes each batch before the next is made. In ID order (what
   `InvoiceFold.counted()` yields) every bucket is whole in one batch; in another order a
   bucket may come in several batches, which HSET merges into the same hash.

The store tracks the buckets it wrote (one short string per 100 invoices), so every
temporary key can be removed whatever happens.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Final

from simpro_counter.keys import bucket_slot
from simpro_counter.metrics.invoices import InvoiceEntry
from simpro_counter.store.ledger.encoding import (
    SHORT_VALUE_BYTES,
    check_cents,
    day_number,
    encode_day_counts,
    encode_entry,
)
from simpro_counter.store.ledger.results import LedgerCounts

Bucket = dict[str, str]
"""A bucket's fields: `bucket_slot` field -> value."""

# A customer's undated invoice in its day array: above every day number a `date` has
# (date.max is day 2,932,896), so sorting puts the dated days first.
_UNDATED: Final = 2**31 - 1
# A 4-byte signed type for day numbers ('l' is the fallback C guarantees to be >= 4).
_DAYS: Final = "i" if array("i").itemsize == 4 else "l"


class LedgerSurvey:
    """Pass 1: the checked totals of the entries and each customer's invoice days.

    Not a frozen value: it accumulates while the entries are read (`add`), then answers.
    """

    def __init__(self) -> None:
        self.invoices = 0
        self.cents = 0
        self._days_of: dict[int, array[int]] = {}  # customer -> its invoices' day numbers

    def add(self, entry: InvoiceEntry) -> None:
        """Count one invoice; ValueError for an amount no counter can hold."""
        customer, cents, issued = entry
        check_cents(cents)
        self.invoices += 1
        self.cents += cents
        if customer is not None:
            days = self._days_of.get(customer)
            if days is None:
                days = self._days_of[customer] = array(_DAYS)
            days.append(_UNDATED if issued is None else day_number(issued))

    def counts(self) -> LedgerCounts:
        """Customers, invoices and cents (version 0: the swap sets it)."""
        return LedgerCounts(len(self._days_of), self.invoices, self.cents, 0)

    def customer_values(self) -> Iterator[tuple[int, str]]:
        """(customer ID, `n|days`) of every customer, ascending by ID."""
        for customer in sorted(self._days_of):
            yield customer, _customer_value(self._days_of[customer])

    def first_day_numbers(self) -> dict[str, str]:
        """Day number -> customers whose first invoice is on that day."""
        firsts = Counter(min(days) for days in self._days_of.values())
        firsts.pop(_UNDATED, None)  # customers without a dated invoice start no day
        return {str(day): str(n) for day, n in firsts.items()}


def _customer_value(days: array[int]) -> str:
    """`encode_customer` of a customer's day array (undated invoices as `_UNDATED`)."""
    ordered = sorted(days)
    dated = bisect_left(ordered, _UNDATED)
    runs = ((day, sum(1 for _ in group)) for day, group in groupby(ordered[:dated]))
    return encode_day_counts(len(ordered), runs)


@dataclass(frozen=True)
class CustomerBatch:
    """Customer values ready for HSET: the compact buckets and the few long values."""

    buckets: dict[str, Bucket]
    long: Bucket
    """Customer ID -> `n|days`, for the values longer than `SHORT_VALUE_BYTES`."""


def customer_batches(
    values: Iterable[tuple[int, str]], fields_per_batch: int
) -> Iterator[CustomerBatch]:
    """`LedgerSurvey.customer_values()` in batches of about `fields_per_batch` values."""
    buckets: dict[str, Bucket] = {}
    long: Bucket = {}
    fields = 0
    current = ""
    for customer, value in values:
        if len(value) > SHORT_VALUE_BYTES:
            long[str(customer)] = value
            fields += 1
            continue
        bucket, field = bucket_slot(customer)
        if fields >= fields_per_batch and bucket != current:
            yield CustomerBatch(buckets, long)
            buckets, long, fields = {}, {}, 0
        current = bucket
        buckets.setdefault(bucket, {})[field] = value
        fields += 1
    if fields:
        yield CustomerBatch(buckets, long)


def entry_batches(
    entries: Iterable[tuple[int, InvoiceEntry]], fields_per_batch: int, expected: LedgerCounts
) -> Iterator[dict[str, Bucket]]:
    """Pass 2: the entries encoded, bucket -> field -> value, about `fields_per_batch`
    fields per batch (a batch ends where a bucket ends).

    `expected` are the survey's counts: should the entries differ from what pass 1 read
    (the source was changed in between), RuntimeError after the last batch, so the
    rebuild is not swapped in with counts that do not match its entries.
    """
    batch: dict[str, Bucket] = {}
    fields = invoices = cents = 0
    current = ""
    for invoice_id, entry in entries:
        bucket, field = bucket_slot(invoice_id)
        if fields >= fields_per_batch and bucket != current:
            yield batch
            batch, fields = {}, 0
        current = bucket
        batch.setdefault(bucket, {})[field] = encode_entry(entry)
        fields += 1
        invoices += 1
        cents += entry[1]
    if batch:
        yield batch
    if (invoices, cents) != (expected.invoices, expected.revenue_cents):
        raise RuntimeError(
            f"The ledger rebuild read {invoices} invoices ({cents} cents) on its second "
            f"pass, {expected.invoices} ({expected.revenue_cents} cents) on its first: "
            "the entries changed during the rebuild"
        )
