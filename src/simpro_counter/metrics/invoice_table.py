"""Columnar, fixed-width storage of what an invoice fold holds per invoice.

A full scan of a large build holds every invoice it has seen until the ledger is rebuilt
from it. Held as a dict of Python objects that costs about 190-400 bytes per invoice; held
here as five parallel `array` columns sorted by invoice ID it costs 29 bytes (plus the
arrays' growth slack):

=============  ======  ==================================================================
column         bytes   holds
=============  ======  ==================================================================
``_keys``      8       invoice ID (int64), ascending, each ID once
``_customers`` 8       customer ID (int64), 0 when there is none
``_cents``     8       ex-tax cents (int64; amounts are below 10^13, so ±10^15 cents)
``_days``      4       `date.toordinal()` of the date issued (int32), 0 when unknown
``_flags``     1       held / counted / has a customer / has a date; 0 marks a removed slot
=============  ======  ==================================================================

Where invoices arrive decides the cost of keeping the columns sorted. A scan reads pages
in ID order, so an invoice is almost always appended at the end or inserted a few hundred
slots before it (the page of newest invoices is read first): both are cheap `array`
operations (a memmove of the short tail). An invoice that would land far from the end
(pages read out of order, a re-read range) waits in a small dict and is merged into the
columns in batches; a removed invoice leaves a marked slot that a merge drops. An ID or
customer ID beyond int64 (no real build has one, but IDs are parsed leniently) is held in
a plain dict instead of being refused, so no input changes what is counted.

The table only stores; the fold (:mod:`simpro_counter.metrics.invoices`) keeps the counts.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from enum import Enum
from heapq import merge
from itertools import chain
from operator import itemgetter

# One counted invoice as stored: (customer ID or None, ex-tax cents, day ordinal or None).
Row = tuple[int | None, int, int | None]
# What is held for an invoice: its row when counted, None when seen but left out.
Held = Row | None


class _Missing(Enum):
    MISSING = "missing"


# Returned by `put` and `pop` when nothing was held for the ID (distinct from None).
MISSING = _Missing.MISSING
Previous = Held | _Missing

_HELD = 1
_COUNTED = 2
_HAS_CUSTOMER = 4
_HAS_DAY = 8

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# A 4-byte signed type for the day column ('i' is 4 bytes on every platform CPython runs
# on; 'l' is the fallback C guarantees to be at least 4).
_INT32 = "i" if array("i").itemsize == 4 else "l"

# An insertion this close to the end moves at most this many slots per column (a few KB):
# cheaper than a later merge. Farther away it waits in the side dict.
SHORT_TAIL = 4096
# The side dict is merged into the columns when it holds this many invoices, or 1/32 of
# the table when that is more: a merge copies the columns once (C speed), so merging in
# batches keeps the cost of out-of-order input near O(n log n) while the side dict stays
# a few bytes per invoice.
MERGE_AT = 4096


def _fits(invoice_id: int, held: Held) -> bool:
    """Whether the invoice fits the int64 columns (its ID and its customer ID)."""
    if not _INT64_MIN <= invoice_id <= _INT64_MAX:
        return False
    if held is None or held[0] is None:
        return True
    return _INT64_MIN <= held[0] <= _INT64_MAX


class InvoiceTable:
    """Invoice ID -> what is held for it, in sorted int64 columns; see the module doc.

    `put` and `pop` return what was held before (:data:`MISSING` when nothing was), so the
    caller can keep running totals without reading twice. Do not change the table while
    iterating it. `short_tail` and `merge_at` exist so tests can force every path.
    """

    def __init__(self, *, short_tail: int = SHORT_TAIL, merge_at: int = MERGE_AT) -> None:
        self._short_tail = short_tail
        self._merge_at = merge_at
        self._keys: array[int] = array("q")
        self._customers: array[int] = array("q")
        self._cents: array[int] = array("q")
        self._days: array[int] = array(_INT32)
        self._flags: array[int] = array("B")
        self._removed = 0  # slots in the columns marked removed (flags 0)
        self._side: dict[int, Held] = {}  # IDs not in the columns yet, waiting for a merge
        self._wide: dict[int, Held] = {}  # IDs or customer IDs beyond int64

    # --- size ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._keys) - self._removed + len(self._side) + len(self._wide)

    def __contains__(self, invoice_id: object) -> bool:
        if not isinstance(invoice_id, int):
            return False
        if invoice_id in self._side or invoice_id in self._wide:
            return True
        slot = self._slot(invoice_id)
        return slot >= 0 and self._flags[slot] != 0

    def nbytes(self) -> int:
        """Bytes used by the columns' items (not their growth slack, not the dicts)."""
        columns = (self._keys, self._customers, self._cents, self._days, self._flags)
        return sum(len(column) * column.itemsize for column in columns)

    # --- changing --------------------------------------------------------------------

    def put(self, invoice_id: int, held: Held) -> Previous:
        """Hold `held` for the invoice, replacing what was held; what was held before."""
        previous = self._pop_dicts(invoice_id)
        keys = self._keys
        count = len(keys)
        if count == 0 or invoice_id > keys[-1]:  # the common case: a new highest ID
            position, found = count, False
        else:
            position = bisect_left(keys, invoice_id)
            found = keys[position] == invoice_id
        if found:
            if self._flags[position]:
                previous = self._read(position)
            else:
                self._removed -= 1
            if _fits(invoice_id, held):
                self._write(position, held)
                return previous
            self._flags[position] = 0
            self._removed += 1
        if not _fits(invoice_id, held):
            self._wide[invoice_id] = held
        elif count - position <= self._short_tail:
            self._insert(position, invoice_id, held)
        else:
            self._side[invoice_id] = held
            if len(self._side) >= max(self._merge_at, count // 32):
                self._merge()
        return previous

    def pop(self, invoice_id: int) -> Previous:
        """Forget the invoice; what was held (:data:`MISSING` when nothing was)."""
        previous = self._pop_dicts(invoice_id)
        if previous is not MISSING:
            return previous
        slot = self._slot(invoice_id)
        if slot < 0 or not self._flags[slot]:
            return MISSING
        previous = self._read(slot)
        self._flags[slot] = 0
        self._removed += 1
        if self._removed >= max(self._merge_at, len(self._keys) // 32):
            self._merge()
        return previous

    # --- reading ---------------------------------------------------------------------

    def items(self) -> Iterator[tuple[int, Held]]:
        """(invoice ID, what is held) for every invoice held, ascending by ID (what lets
        the ledger rebuild fill each of its buckets in one go)."""
        read = self._read
        keys = self._keys
        in_columns = ((keys[slot], read(slot)) for slot, flags in enumerate(self._flags) if flags)
        others = sorted(chain(self._side.items(), self._wide.items()), key=itemgetter(0))
        yield from merge(in_columns, others, key=itemgetter(0)) if others else in_columns

    def counted_customer_days(self) -> Iterator[tuple[int, int]]:
        """(customer ID, day ordinal) of every counted invoice that has both."""
        both = _HELD | _COUNTED | _HAS_CUSTOMER | _HAS_DAY
        for flags, customer, day in zip(self._flags, self._customers, self._days, strict=True):
            if flags == both:
                yield customer, day
        for held in chain(self._side.values(), self._wide.values()):
            if held is not None and held[0] is not None and held[2] is not None:
                yield held[0], held[2]

    def ids_between(self, low: int | None = None, high: int | None = None) -> list[int]:
        """The IDs held from `low` to `high` (inclusive; None: unbounded), ascending."""
        keys = self._keys
        start = 0 if low is None else bisect_left(keys, low)
        end = len(keys) if high is None else bisect_right(keys, high)
        in_columns: list[int] = (
            keys[start:end].tolist()
            if self._removed == 0
            else [
                key
                for key, flags in zip(keys[start:end], self._flags[start:end], strict=True)
                if flags
            ]
        )
        others = sorted(
            key
            for key in chain(self._side, self._wide)
            if (low is None or key >= low) and (high is None or key <= high)
        )
        return list(merge(in_columns, others)) if others else in_columns

    def count_above(self, invoice_id: int) -> int:
        """How many IDs held are greater than `invoice_id`."""
        start = bisect_right(self._keys, invoice_id)
        in_columns = len(self._keys) - start
        if self._removed:
            in_columns -= self._flags[start:].count(0)
        return in_columns + sum(1 for key in chain(self._side, self._wide) if key > invoice_id)

    # --- internals -------------------------------------------------------------------

    def _pop_dicts(self, invoice_id: int) -> Previous:
        if invoice_id in self._side:
            return self._side.pop(invoice_id)
        if invoice_id in self._wide:
            return self._wide.pop(invoice_id)
        return MISSING

    def _slot(self, invoice_id: int) -> int:
        """The column slot of the ID (held or marked removed), -1 when it has none."""
        keys = self._keys
        if not keys or invoice_id > keys[-1] or invoice_id < keys[0]:
            return -1
        slot = bisect_left(keys, invoice_id)
        return slot if keys[slot] == invoice_id else -1

    def _read(self, slot: int) -> Held:
        flags = self._flags[slot]
        if not flags & _COUNTED:
            return None
        customer = self._customers[slot] if flags & _HAS_CUSTOMER else None
        day = self._days[slot] if flags & _HAS_DAY else None
        return customer, self._cents[slot], day

    def _write(self, slot: int, held: Held) -> None:
        flags, customer, cents, day = _encode(held)
        self._customers[slot] = customer
        self._cents[slot] = cents
        self._days[slot] = day
        self._flags[slot] = flags

    def _insert(self, position: int, invoice_id: int, held: Held) -> None:
        flags, customer, cents, day = _encode(held)
        if position == len(self._keys):
            self._keys.append(invoice_id)
            self._customers.append(customer)
            self._cents.append(cents)
            self._days.append(day)
            self._flags.append(flags)
            return
        self._keys.insert(position, invoice_id)
        self._customers.insert(position, customer)
        self._cents.insert(position, cents)
        self._days.insert(position, day)
        self._flags.insert(position, flags)

    def _merge(self) -> None:
        """Drop the slots marked removed and move the side dict into the columns.

        Column by column, so at most one column is copied at a time.
        """
        if self._removed:
            flags = self._flags.tobytes()
            removed: list[int] = []
            slot = flags.find(0)
            while slot >= 0:
                removed.append(slot)
                slot = flags.find(0, slot + 1)
            del flags
            self._keys = _without(self._keys, removed)
            self._customers = _without(self._customers, removed)
            self._cents = _without(self._cents, removed)
            self._days = _without(self._days, removed)
            self._flags = _without(self._flags, removed)
            self._removed = 0
        if not self._side:
            return
        ids = sorted(self._side)
        positions = [bisect_left(self._keys, invoice_id) for invoice_id in ids]
        encoded = [_encode(self._side[invoice_id]) for invoice_id in ids]
        self._side.clear()
        self._keys = _spliced(self._keys, positions, ids)
        self._flags = _spliced(self._flags, positions, [e[0] for e in encoded])
        self._customers = _spliced(self._customers, positions, [e[1] for e in encoded])
        self._cents = _spliced(self._cents, positions, [e[2] for e in encoded])
        self._days = _spliced(self._days, positions, [e[3] for e in encoded])


def _encode(held: Held) -> tuple[int, int, int, int]:
    """(flags, customer, cents, day) as the columns hold them."""
    if held is None:
        return _HELD, 0, 0, 0
    customer, cents, day = held
    flags = _HELD | _COUNTED
    if customer is not None:
        flags |= _HAS_CUSTOMER
    if day is not None:
        flags |= _HAS_DAY
    return flags, customer or 0, cents, day or 0


def _without(column: array[int], removed: list[int]) -> array[int]:
    """The column without the slots at `removed` (ascending)."""
    kept: array[int] = array(column.typecode)
    start = 0
    for slot in removed:
        if slot > start:
            kept += column[start:slot]
        start = slot + 1
    kept += column[start:]
    return kept


def _spliced(column: array[int], positions: list[int], values: list[int]) -> array[int]:
    """The column with each value inserted before the slot at its (ascending) position."""
    spliced: array[int] = array(column.typecode)
    start = 0
    for position, value in zip(positions, values, strict=True):
        if position > start:
            spliced += column[start:position]
            start = position
        spliced.append(value)
    spliced += column[start:]
    return spliced
