"""`InvoiceLedgerStore`: the ledger's operations in Redis, and their one error translation.

Every public method raises `StoreError` (never a redis-py error or a socket error) when
Redis fails, whether it is down, timed out or refused a command: `_translated` is the one
place that maps them, so callers catch `StoreError` only.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from simpro_counter.errors import LedgerJournalGapError, StoreError
from simpro_counter.keys import (
    LEDGER_BUILD_TTL_SECONDS,
    LEDGER_JOURNAL_LENGTH,
    Keys,
    LedgerBuildingKeys,
    slot_id,
)
from simpro_counter.metrics.invoices import InvoiceEntry
from simpro_counter.store.circuit import describe
from simpro_counter.store.ledger.encoding import (
    BUCKET_SIZE,
    DELETED,
    DELETED_MARK,
    Deleted,
    day_of,
    decode_entry,
    encode_entry,
)
from simpro_counter.store.ledger.plan import Bucket, RebuildPlan, plan_rebuild
from simpro_counter.store.ledger.results import (
    OUTCOMES,
    FirstDays,
    LedgerChange,
    LedgerCounts,
    LedgerRebuild,
)
from simpro_counter.store.ledger.scripts import APPLY, SWAP, apply_keys, swap_keys

# Fields per HSET of the long customers and first days (the buckets take one HSET each).
_FIELDS_PER_COMMAND = 1_000


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Redis failing during `operation` as a `StoreError` that names it.

    OSError covers the socket errors (and TimeoutError) redis-py lets through. Anything
    else (a ValueError for an amount no counter can hold, a bug) is not a Redis failure
    and passes unchanged.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(
            f"The invoice ledger could not {operation}: Redis failed ({describe(exc)})"
        ) from exc


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
        self._apply = client.register_script(APPLY)
        self._apply_keys = apply_keys(self.keys)
        self._swap = client.register_script(SWAP)

    async def apply(self, invoice_id: int, entry: InvoiceEntry | Deleted) -> LedgerChange:
        """Record what `invoice_id` counts for now (`DELETED`: it is gone, or the invoice
        filter leaves it out). Atomic; a no-op when nothing changes."""
        new = DELETED_MARK if entry is DELETED else encode_entry(entry)
        with _translated(f"apply invoice {int(invoice_id)}"):
            reply = await self._apply(
                keys=self._apply_keys,
                args=[str(int(invoice_id)), new, self.journal_length],
            )
        outcome, *counts = reply
        if outcome not in OUTCOMES:  # pragma: no cover - the script returns no other
            raise StoreError(f"Unexpected ledger outcome {outcome!r}")
        return LedgerChange(outcome, LedgerCounts.parse(counts))

    async def counts(self) -> LedgerCounts:
        """Customers, invoices, revenue and version in one MGET: always mutually consistent."""
        k = self.keys
        with _translated("read its counts"):
            values = await self.client.mget([k.customers, k.invoices, k.revenue_cents, k.version])
        return LedgerCounts.parse(values)

    async def version(self) -> int:
        """The current version: read it before a full scan, pass it as `journal_from`."""
        with _translated("read its version"):
            return int(await self.client.get(self.keys.version) or 0)

    async def first_day_counts(self) -> FirstDays:
        """How many customers had their first invoice on each day, with the customer count
        and the version, read together (one MULTI): what the growth history is made of.

        The hash has one field per day that starts a customer (a few thousand at most),
        so this costs about a millisecond whatever the number of invoices.
        """
        k = self.keys
        with _translated("read the first days of its customers"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(k.first_day_numbers)
                pipe.mget([k.customers, k.version])
                days, (customers, version) = await pipe.execute()
        return FirstDays(
            {day_of(int(day)): int(n) for day, n in days.items()},
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
        once. They are written into temporary keys (batched HSETs in pipelines; they
        expire after `LEDGER_BUILD_TTL_SECONDS` should this process die), then one Lua
        script renames them over the live keys and sets the counts: a reader sees either
        the old counts or the new ones, never anything in between.

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
        plan = plan_rebuild(entries)  # a bad entry raises here, before any write
        with _translated("rebuild from a full scan"):
            try:
                await self._write_building(building, plan)
                totals = plan.counts
                reply = await self._swap(
                    keys=swap_keys(self.keys, building),
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
                await self._delete_building(building, plan)
        if reply[0] == "gap":
            raise LedgerJournalGapError(
                f"The ledger journal starts at version {reply[1]}, after {journal_from}: "
                "events that arrived during the scan were trimmed; the rebuild was not "
                "applied, scan again."
            )
        _, *counts, replayed = reply
        return LedgerRebuild(LedgerCounts.parse(counts), int(replayed))

    async def entries(self) -> AsyncIterator[tuple[int, InvoiceEntry]]:
        """Every invoice counted and its entry, one bucket (100 invoices) per command.

        For checks and benchmarks, never a hot path: it reads the whole ledger, and a
        bucket removed or written meanwhile may be missed or read in its new state.
        """
        with _translated("list its buckets"):
            buckets = await self.client.smembers(self.keys.entry_buckets)
        for bucket in sorted(str(b) for b in buckets):
            key = f"{self.keys.entry_bucket}:{bucket}"
            with _translated("read its invoices"):
                fields = await self.client.hgetall(key)
            for field, text in fields.items():
                yield slot_id(bucket, str(field)), decode_entry(str(text))

    async def _write_building(self, building: LedgerBuildingKeys, plan: RebuildPlan) -> None:
        """Fill the temporary keys: a bucket per HSET, many HSETs per round trip."""
        await self._delete_building(building, plan)
        await self._write_buckets(building.entry_bucket, plan.entry_buckets)
        await self._write_buckets(building.customer_bucket, plan.customer_buckets)
        await self._write_hash(building.customer_long, _chunked(plan.customer_long.items()))
        await self._write_hash(building.first_day_numbers, _chunked(plan.first_day_numbers.items()))
        await self._write_set(building.entry_buckets, sorted(plan.entry_buckets))
        await self._write_set(building.customer_buckets, sorted(plan.customer_buckets))

    async def _write_buckets(self, stem: str, buckets: dict[str, Bucket]) -> None:
        """One HSET and one EXPIRE per bucket, `batch_size` fields per round trip."""
        per_batch = max(1, self.batch_size // BUCKET_SIZE)
        numbers = sorted(buckets)
        for start in range(0, len(numbers), per_batch):
            async with self.client.pipeline(transaction=False) as pipe:
                for bucket in numbers[start : start + per_batch]:
                    key = f"{stem}:{bucket}"
                    fields: dict[FieldT, EncodableT] = dict(buckets[bucket].items())
                    pipe.hset(key, mapping=fields)
                    pipe.expire(key, LEDGER_BUILD_TTL_SECONDS)
                await pipe.execute()

    async def _write_set(self, key: str, members: list[str]) -> None:
        for start in range(0, len(members), _FIELDS_PER_COMMAND):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.sadd(key, *members[start : start + _FIELDS_PER_COMMAND])
                pipe.expire(key, LEDGER_BUILD_TTL_SECONDS)
                await pipe.execute()

    async def _write_hash(self, key: str, chunks: list[dict[FieldT, EncodableT]]) -> None:
        commands_per_batch = max(1, self.batch_size // _FIELDS_PER_COMMAND)
        chunks = [chunk for chunk in chunks if chunk]
        for start in range(0, len(chunks), commands_per_batch):
            async with self.client.pipeline(transaction=False) as pipe:
                for chunk in chunks[start : start + commands_per_batch]:
                    pipe.hset(key, mapping=chunk)
                pipe.expire(key, LEDGER_BUILD_TTL_SECONDS)
                await pipe.execute()

    async def _delete_building(self, building: LedgerBuildingKeys, plan: RebuildPlan) -> None:
        """Remove the rebuild's temporary keys (gone already after a successful swap)."""
        keys = [
            *building.singles(),
            *(f"{building.entry_bucket}:{b}" for b in plan.entry_buckets),
            *(f"{building.customer_bucket}:{b}" for b in plan.customer_buckets),
        ]
        for start in range(0, len(keys), _FIELDS_PER_COMMAND):
            await self.client.unlink(*keys[start : start + _FIELDS_PER_COMMAND])


def _chunked(items: Iterable[tuple[object, object]]) -> list[dict[FieldT, EncodableT]]:
    """Fields for HSET, `_FIELDS_PER_COMMAND` per command."""
    pairs = [(str(field), str(value)) for field, value in items]
    return [
        dict(pairs[i : i + _FIELDS_PER_COMMAND]) for i in range(0, len(pairs), _FIELDS_PER_COMMAND)
    ]
