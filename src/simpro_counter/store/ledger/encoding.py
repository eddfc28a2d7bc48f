"""The ledger's format: how invoices and customers are written in Redis.

Format 3 (`LEDGER_FORMAT`) is laid out for Redis's compact hash encoding (ziplist in
Redis 6, listpack in 7: a few bytes per field instead of a hash table's ~70), which Redis
keeps while a hash has at most `hash-max-ziplist-entries` fields (default 128) and no
value longer than `hash-max-ziplist-value` (default 64 bytes). Nothing here depends on
raising them:

- invoices go in buckets of `BUCKET_SIZE` (100): invoice 123456 is field `56` of hash
  `<stem>:1234` (`keys.bucket_slot`: split on the decimal digits, so the Lua scripts
  compute it exactly from the ID's string, whatever its size), value
  `customerID|cents|day` (customer "" for an invoice without customer, day "" when
  Simpro sent none) — at most 48 bytes;
- a day is its number of days since 1970-01-01 (`19723`, not `2024-01-01`);
- each customer is one value, bucketed like invoices: `n|days`, its number of invoices
  and the days of its dated ones, sorted, comma-joined, `day` for one invoice and
  `day=k` for k (`3|19723,19800=2`); the few whose value is longer than
  `SHORT_VALUE_BYTES` live in one ordinary hash (`customer_long`) instead, so their
  bucket stays compact.

Format 2 kept the same facts in four large hashes (`invoice_entries`,
`customer_invoices`, `customer_days`, `first_days`, ISO dates, each customer twice); its
keys have other names, so they are never misread, and a rebuild removes them. The Lua
scripts (`scripts.py`) parse the same strings; a deletion travels to them as
`DELETED_MARK`.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from datetime import date
from typing import Final

from simpro_counter.metrics.invoices import InvoiceEntry

# The layout of the ledger; stored in the details of values built on it.
LEDGER_FORMAT: Final = 3

# Fields per bucket: an ID's last two decimal digits (well under the default 128 entries).
BUCKET_SIZE: Final = 100
# A customer value longer than this goes to `customer_long` (Redis's default
# `hash-max-ziplist-value` / `hash-max-listpack-value`).
SHORT_VALUE_BYTES: Final = 64

# date(1970, 1, 1).toordinal(): day numbers count from there.
_EPOCH_ORDINAL: Final = 719_163


class Deleted(enum.Enum):
    """Marks an invoice that no longer counts: deleted, or left out by the invoice filter."""

    DELETED = "deleted"


DELETED: Final = Deleted.DELETED

# How a deletion travels to Lua and sits in the journal.
DELETED_MARK: Final = "d"

# Redis counters are signed 64-bit: an amount must stay far enough inside that a sum of
# many cannot overflow (Simpro amounts are bounded much lower by `ex_tax_cents`).
_MAX_CENTS = 2**62


def day_number(day: date) -> int:
    """Days since 1970-01-01 (negative before)."""
    return day.toordinal() - _EPOCH_ORDINAL


def day_of(number: int) -> date:
    """The date `day_number` numbered."""
    return date.fromordinal(number + _EPOCH_ORDINAL)


def check_cents(cents: int) -> None:
    """ValueError for an amount a Redis counter could not hold (checked before anything
    is written: a Lua script failing half-way would leave the counts inconsistent)."""
    if not -_MAX_CENTS < cents < _MAX_CENTS:
        raise ValueError(f"{cents} cents is beyond what the ledger can add up exactly")


def encode_entry(entry: InvoiceEntry) -> str:
    """`customerID|cents|day`, customer and day empty when unknown.

    Raises ValueError for an amount a Redis counter could not hold (`check_cents`).
    """
    customer, cents, issued = entry
    check_cents(cents)
    return (
        f"{'' if customer is None else int(customer)}|{int(cents)}|"
        f"{'' if issued is None else day_number(issued)}"
    )


def decode_entry(text: str) -> InvoiceEntry:
    """The entry `encode_entry` wrote (kept beside it: the format's two directions)."""
    customer, cents, issued = text.split("|")
    return (
        int(customer) if customer else None,
        int(cents),
        day_of(int(issued)) if issued else None,
    )


def encode_customer(invoices: int, days: Counter[date]) -> str:
    """A customer's value: `n|days`, e.g. `3|19723,19800=2` (one undated invoice: `1|`)."""
    return encode_day_counts(
        invoices, ((day_number(day), n) for day, n in sorted(days.items()) if n > 0)
    )


def encode_day_counts(invoices: int, day_counts: Iterable[tuple[int, int]]) -> str:
    """`encode_customer` from (day number, invoices on it) pairs, ascending, each n > 0."""
    items = (str(day) if n == 1 else f"{day}={n}" for day, n in day_counts)
    return f"{invoices}|{','.join(items)}"


def decode_customer(text: str) -> tuple[int, Counter[date]]:
    """The invoice count and the days `encode_customer` wrote."""
    invoices, items = text.split("|")
    days: Counter[date] = Counter()
    for item in filter(None, items.split(",")):
        day, _, n = item.partition("=")
        days[day_of(int(day))] = int(n or 1)
    return int(invoices), days


def first_day(text: str) -> date | None:
    """A customer's first invoice day from its value (None: no dated invoice)."""
    items = text.split("|", 1)[1]
    return day_of(int(items.split(",", 1)[0].split("=", 1)[0])) if items else None
