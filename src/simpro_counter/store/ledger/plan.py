"""What a rebuild writes, computed from a full scan's invoices before Redis is touched.

Pure Python (no Redis): a bad entry (an amount no counter can hold) raises ValueError
here, before any temporary key exists, and the plan names every key the rebuild will
write, so they can be removed whatever happens next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from simpro_counter.keys import bucket_slot
from simpro_counter.metrics.invoices import InvoiceEntry
from simpro_counter.store.ledger.encoding import (
    SHORT_VALUE_BYTES,
    day_number,
    encode_customer,
    encode_entry,
)
from simpro_counter.store.ledger.results import LedgerCounts

Bucket = dict[str, str]
"""A bucket's fields: `bucket_slot` field -> value."""


@dataclass(frozen=True)
class RebuildPlan:
    """The format-3 ledger of a full scan's invoices, as strings ready for HSET."""

    counts: LedgerCounts
    """Customers, invoices and cents of the scan (version 0: the swap sets it)."""
    entry_buckets: dict[str, Bucket]
    """Bucket -> invoice field -> `customerID|cents|day`."""
    customer_buckets: dict[str, Bucket]
    """Bucket -> customer field -> `n|days`, for the values that fit a compact hash."""
    customer_long: dict[str, str]
    """Customer ID -> `n|days`, for the values longer than `SHORT_VALUE_BYTES`."""
    first_day_numbers: dict[str, str]
    """Day number -> customers whose first invoice is on that day."""


def plan_rebuild(entries: Iterable[tuple[int, InvoiceEntry]]) -> RebuildPlan:
    """The plan of `entries` (each invoice ID once)."""
    per_customer: Counter[int] = Counter()
    days_of: dict[int, Counter[date]] = {}
    entry_buckets: dict[str, Bucket] = {}
    invoices = cents = 0
    for invoice_id, entry in entries:
        bucket, field = bucket_slot(invoice_id)
        entry_buckets.setdefault(bucket, {})[field] = encode_entry(entry)
        invoices += 1
        customer, amount, issued = entry
        cents += amount
        if customer is not None:
            per_customer[customer] += 1
            if issued is not None:
                days_of.setdefault(customer, Counter())[issued] += 1
    customer_buckets: dict[str, Bucket] = {}
    customer_long: dict[str, str] = {}
    for customer, n in per_customer.items():
        value = encode_customer(n, days_of.get(customer, Counter()))
        if len(value) <= SHORT_VALUE_BYTES:
            bucket, field = bucket_slot(customer)
            customer_buckets.setdefault(bucket, {})[field] = value
        else:
            customer_long[str(customer)] = value
    first_days = Counter(day_number(min(days)) for days in days_of.values())
    return RebuildPlan(
        counts=LedgerCounts(len(per_customer), invoices, cents, 0),
        entry_buckets=entry_buckets,
        customer_buckets=customer_buckets,
        customer_long=customer_long,
        first_day_numbers={str(day): str(n) for day, n in first_days.items()},
    )
