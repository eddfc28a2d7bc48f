"""`InvoiceLedgerStore`: the ledger's operations in Redis, and their one error translation.

Every public method raises `StoreError` (never a redis-py error or a socket error) when
Redis fails, whether it is down, timed out or refused a command: `_translated` is the one
place that maps them, so callers catch `StoreError` only.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
    DELETED,
    DELETED_MARK,
    Deleted,
    day_of,
    decode_entry,
    encode_entry,
)
from simpro_counter.store.ledger.plan import (
    Bucket,
    LedgerSurvey,
    customer_batches,
    entry_batches,
)
from simpro_counter.store.ledger.results import (
    OUTCOMES,
    FirstDays,
    LedgerChange,
    LedgerCounts,
    LedgerRebuild,
)
from simpro_counter.store.ledger.scripts import APPLY, SWAP, apply_keys, swap_keys

# Fields per HSET of the long customers and first days (the buckets take one HSET each),
# and members per SADD.
_FIELDS_PER_COMMAND = 1_000
# Entries the first pass reads between two returns to the event loop (a few ms): the
# refresh lock's heartbeat runs on the same loop and must not starve.
_ENTRIES_PER_YIELD = 5_000


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
        once, best in ID order. They are read twice and never held whole (`plan`): a
        first pass checks them (a ValueError for an amount no counter can hold comes
        before anything is written) and sums them, a second writes them into temporary
        keys a batch at a time (HSETs in pipelines; they expire after
        `LEDGER_BUILD_TTL_SECONDS` should this process die). A one-shot iterator is
        copied into a list first. Then one Lua script renames the temporary keys over
        the live ones and sets the counts: a reader sees either the old counts or the
        new ones, never anything in between. Do not change `entries` meanwhile.

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
        source = _readable_twice(entries)
        survey = LedgerSurvey()
        # Pass 1, no write yet: a bad entry raises here, before any temporary key exists.
        for done, (_, entry) in enumerate(source, 1):
            survey.add(entry)
            if done % _ENTRIES_PER_YIELD == 0:
                await asyncio.sleep(0)  # let the refresh lock's heartbeat run
        building = self.keys.building(secrets.token_hex(8))
        written = _WrittenBuckets(set(), set())
        with _translated("rebuild from a full scan"):
            try:
                await self._write_building(building, source, survey, written)
                totals = survey.counts()
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
                await self._delete_building(building, written)
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

    async def _write_building(
        self,
        building: LedgerBuildingKeys,
        entries: Iterable[tuple[int, InvoiceEntry]],
        survey: LedgerSurvey,
        written: _WrittenBuckets,
    ) -> None:
        """Fill the temporary keys, a batch at a time (pass 2 of the entries).

        Each batch of buckets is written (a bucket per HSET, one pipeline per batch)
        before the next is encoded, so the process holds one batch, not the ledger.
        """
        for batch in entry_batches(entries, self.batch_size, survey.counts()):
            await self._write_buckets(
                building.entry_bucket, building.entry_buckets, batch, written.entries
            )
        for customers in customer_batches(survey.customer_values(), self.batch_size):
            await self._write_buckets(
                building.customer_bucket,
                building.customer_buckets,
                customers.buckets,
                written.customers,
            )
            await self._write_hash(building.customer_long, _chunked(customers.long.items()))
        await self._write_hash(
            building.first_day_numbers, _chunked(survey.first_day_numbers().items())
        )

    async def _write_buckets(
        self, stem: str, index: str, buckets: dict[str, Bucket], written: set[str]
    ) -> None:
        """One HSET and one EXPIRE per bucket, and the buckets added to the `index` set,
        in one pipeline. `written` learns the buckets before they are sent, so a failure
        half-way still removes them."""
        names = sorted(buckets)
        written.update(names)
        async with self.client.pipeline(transaction=False) as pipe:
            for bucket in names:
                key = f"{stem}:{bucket}"
                fields: dict[FieldT, EncodableT] = dict(buckets[bucket].items())
                pipe.hset(key, mapping=fields)
                pipe.expire(key, LEDGER_BUILD_TTL_SECONDS)
            for start in range(0, len(names), _FIELDS_PER_COMMAND):
                pipe.sadd(index, *names[start : start + _FIELDS_PER_COMMAND])
            pipe.expire(index, LEDGER_BUILD_TTL_SECONDS)
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

    async def _delete_building(
        self, building: LedgerBuildingKeys, written: _WrittenBuckets
    ) -> None:
        """Remove the rebuild's temporary keys (gone already after a successful swap)."""
        keys = [
            *building.singles(),
            *(f"{building.entry_bucket}:{b}" for b in written.entries),
            *(f"{building.customer_bucket}:{b}" for b in written.customers),
        ]
        for start in range(0, len(keys), _FIELDS_PER_COMMAND):
            await self.client.unlink(*keys[start : start + _FIELDS_PER_COMMAND])


@dataclass(frozen=True)
class _WrittenBuckets:
    """The buckets a rebuild has sent (one short string per 100 invoices): what to remove
    should it fail."""

    entries: set[str]
    customers: set[str]


def _readable_twice(
    entries: Iterable[tuple[int, InvoiceEntry]],
) -> Iterable[tuple[int, InvoiceEntry]]:
    """`entries` if it can be read twice (a collection, `InvoiceFold.counted()`); a
    one-shot iterator is copied into a list first, which holds it whole."""
    return list(entries) if isinstance(entries, Iterator) else entries


def _chunked(items: Iterable[tuple[object, object]]) -> list[dict[FieldT, EncodableT]]:
    """Fields for HSET, `_FIELDS_PER_COMMAND` per command."""
    pairs = [(str(field), str(value)) for field, value in items]
    return [
        dict(pairs[i : i + _FIELDS_PER_COMMAND]) for i in range(0, len(pairs), _FIELDS_PER_COMMAND)
    ]
