"""InvoiceLedgerStore against a real redis-server: exactness, rebuild atomicity, memory."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import TypeAlias

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpro_counter.keys import Keys
from simpro_counter.store import EmbeddedRedis, connect
from simpro_counter.store.ledger import (
    DELETED,
    Deleted,
    InvoiceLedgerStore,
    LedgerCounts,
    LedgerJournalGapError,
)

pytest_plugins = ["tests.redis_fixtures"]

Customer: TypeAlias = int | Deleted | None


class Model:
    """The reference: a plain dict invoice -> customer."""

    def __init__(self) -> None:
        self.customer_of: dict[int, int | None] = {}

    def apply(self, invoice: int, customer: Customer) -> str:
        known = invoice in self.customer_of
        if isinstance(customer, Deleted):
            if not known:
                return "unchanged"
            del self.customer_of[invoice]
            return "deleted"
        if known and self.customer_of[invoice] == customer:
            return "unchanged"
        self.customer_of[invoice] = customer
        return "moved" if known else "created"

    def customers(self) -> int:
        return len({c for c in self.customer_of.values() if c is not None})

    def per_customer(self) -> dict[str, str]:
        counted = Counter(c for c in self.customer_of.values() if c is not None)
        return {str(c): str(n) for c, n in counted.items()}


async def check_against(ledger: InvoiceLedgerStore, model: Model, deep: bool = False) -> None:
    counts = await ledger.counts()
    assert (counts.customers, counts.invoices) == (model.customers(), len(model.customer_of))
    if deep:
        assert await ledger.customer_of() == model.customer_of
        assert await ledger.client.hgetall(ledger.keys.customer_invoices) == model.per_customer()


async def test_create_move_delete_duplicate_and_unknown_delete(
    redis_client: aioredis.Redis,
) -> None:
    ledger = InvoiceLedgerStore(redis_client, Keys("t"))
    model = Model()
    assert await ledger.counts() == LedgerCounts(0, 0, 0)
    steps: list[tuple[int, Customer, str, int, int]] = [
        # invoice, customer, outcome, customers, invoices
        (1, 10, "created", 1, 1),
        (1, 10, "unchanged", 1, 1),  # duplicate webhook
        (2, 10, "created", 1, 2),  # second invoice of the same customer
        (3, None, "created", 1, 3),  # invoice without customer
        (3, 11, "moved", 2, 3),  # gets a customer
        (1, 12, "moved", 3, 3),  # 10 keeps invoice 2
        (2, 12, "moved", 2, 3),  # 10 has none left
        (9, DELETED, "unchanged", 2, 3),  # unknown invoice
        (2, DELETED, "deleted", 2, 2),  # 12 keeps invoice 1
        (2, DELETED, "unchanged", 2, 2),  # replayed delete
        (1, None, "moved", 1, 2),  # loses its customer
        (1, DELETED, "deleted", 1, 1),
        (3, DELETED, "deleted", 0, 0),
    ]
    version = 0
    for invoice, customer, outcome, customers, invoices in steps:
        change = await ledger.apply(invoice, customer)
        assert model.apply(invoice, customer) == outcome
        assert (change.outcome, change.customers, change.invoices) == (
            outcome,
            customers,
            invoices,
        )
        if outcome != "unchanged":
            version += 1
        assert change.version == version
        await check_against(ledger, model, deep=True)
    assert await redis_client.hlen("t:ledger:customer_invoices") == 0
    assert await redis_client.llen("t:ledger:journal") == version


async def test_rebuild_replays_events_from_the_journal(redis_client: aioredis.Redis) -> None:
    ledger = InvoiceLedgerStore(redis_client)
    await ledger.apply(1, 1)
    await ledger.apply(2, 2)
    before_scan = await ledger.version()
    scanned = {1: 1, 2: 2, 3: 3}  # the scan saw invoice 3 but not the later changes
    await ledger.apply(3, 3)  # seen by the scan too: replay is a no-op
    await ledger.apply(4, 4)  # created after the scan read its page
    await ledger.apply(1, DELETED)
    result = await ledger.rebuild(scanned, journal_from=before_scan)
    assert result.replayed == 3
    assert await ledger.customer_of() == {2: 2, 3: 3, 4: 4}
    assert (result.customers, result.invoices) == (3, 3)
    assert await ledger.counts() == LedgerCounts(3, 3, result.version)
    # Without journal_from the scan's state is taken as is.
    result = await ledger.rebuild({7: None})
    assert (result.customers, result.invoices, result.replayed) == (0, 1, 0)
    assert await ledger.customer_of() == {7: None}
    # An empty scan empties the ledger; no temporary key is left behind.
    await ledger.rebuild({})
    assert await ledger.counts() == LedgerCounts(0, 0, result.version + 1)
    assert sorted(await redis_client.keys("*")) == [
        f"simpro:ledger:{name}" for name in ("customers", "invoices", "journal", "version")
    ]
    await ledger.rebuild({1: 5})
    assert await redis_client.ttl("simpro:ledger:invoice_customer") == -1  # no build TTL


async def test_rebuild_refuses_when_the_journal_was_trimmed(redis_client: aioredis.Redis) -> None:
    ledger = InvoiceLedgerStore(redis_client, journal_length=3)
    before_scan = await ledger.version()
    for invoice in range(5):
        await ledger.apply(invoice, invoice)
    with pytest.raises(LedgerJournalGapError):
        await ledger.rebuild({100: 1}, journal_from=before_scan)
    assert (await ledger.counts())[:2] == (5, 5)  # untouched
    assert await redis_client.keys("*building*") == []
    # From a version the journal still holds, it works.
    result = await ledger.rebuild({0: 0, 1: 1}, journal_from=await ledger.version() - 2)
    assert (result.customers, result.replayed) == (4, 2)


# -- property: counts agree with the model after every operation, rebuilds included ------

invoices = st.integers(min_value=1, max_value=12)
customers: st.SearchStrategy[Customer] = st.one_of(
    st.integers(min_value=1, max_value=5), st.none(), st.just(DELETED)
)
applies = st.tuples(st.just("apply"), invoices, customers)
# A rebuild: the scan snapshot is taken after `seen` of the events that arrive during it.
rebuilds = st.tuples(st.just("rebuild"), st.lists(st.tuples(invoices, customers), max_size=6))
operations = st.lists(st.one_of(applies, applies, rebuilds), max_size=30)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations, data=st.data())
def test_counts_follow_the_model(
    shared_redis: EmbeddedRedis, ops: list[tuple[object, ...]], data: st.DataObject
) -> None:
    async def run() -> None:
        client = connect(shared_redis.url, timeout=2)
        try:
            await client.flushall()
            ledger = InvoiceLedgerStore(client)
            model = Model()
            for op in ops:
                if op[0] == "apply":
                    _, invoice, customer = op
                    assert isinstance(invoice, int)
                    change = await ledger.apply(invoice, customer)  # type: ignore[arg-type]
                    assert change.outcome == model.apply(invoice, customer)  # type: ignore[arg-type]
                else:
                    during = op[1]
                    assert isinstance(during, list)
                    seen = data.draw(st.integers(0, len(during)), label="seen")
                    before_scan = await ledger.version()
                    snapshot = dict(model.customer_of)
                    for index, (invoice, customer) in enumerate(during):
                        await ledger.apply(invoice, customer)
                        model.apply(invoice, customer)
                        if index + 1 == seen:
                            snapshot = dict(model.customer_of)
                        await check_against(ledger, model)
                    result = await ledger.rebuild(snapshot, journal_from=before_scan)
                    assert (result.customers, result.invoices) == (
                        model.customers(),
                        len(model.customer_of),
                    )
                await check_against(ledger, model)
            await check_against(ledger, model, deep=True)
        finally:
            await client.aclose()

    asyncio.run(run())


# -- rebuild atomicity under a concurrent reader ------------------------------------------


async def test_readers_never_see_an_intermediate_count_during_a_rebuild(
    redis_server: EmbeddedRedis, redis_client: aioredis.Redis
) -> None:
    ledger = InvoiceLedgerStore(redis_client)
    rng = random.Random(7)
    old_state: dict[int, int | None] = {i: rng.randrange(3_000) for i in range(20_000)}
    old = await ledger.rebuild(old_state)
    new_state: dict[int, int | None] = {
        i: rng.randrange(8_000) if i % 10 else None for i in range(50_000)
    }
    expected_new = (len({c for c in new_state.values() if c is not None}), len(new_state))

    reader_client = connect(redis_server.url, timeout=2)
    reader = InvoiceLedgerStore(reader_client)
    seen: Counter[tuple[int, int]] = Counter()
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            counts = await reader.counts()
            seen[counts.customers, counts.invoices] += 1

    task = asyncio.create_task(poll())
    try:
        await asyncio.sleep(0.01)
        result = await ledger.rebuild(new_state)
        await asyncio.sleep(0.01)
    finally:
        done.set()
        await task
        await reader_client.aclose()
    assert (result.customers, result.invoices) == expected_new
    assert set(seen) == {(old.customers, old.invoices), expected_new}
    assert seen[old.customers, old.invoices] >= 5  # the reader really ran during the build


# -- memory ---------------------------------------------------------------------------------


async def test_memory_per_100k_invoices(
    redis_client: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(100_000)
    # Skewed like real books: a few customers hold many invoices, most hold a handful.
    weights = [1 / (rank + 1) ** 0.8 for rank in range(15_000)]
    owners = rng.choices(range(200_000, 215_000), weights=weights, k=100_000)
    state: dict[int, int | None] = {
        invoice: owner if invoice % 50 else None
        for invoice, owner in zip(range(10_000, 110_000), owners, strict=True)
    }
    ledger = InvoiceLedgerStore(redis_client)
    result = await ledger.rebuild(state)
    k = ledger.keys
    usage = {
        key: int(await redis_client.memory_usage(key, samples=0) or 0)
        for key in (k.invoice_customer, k.customer_invoices, k.customers, k.invoices)
    }
    for invoice in range(1_000_000, 1_000_000 + ledger.journal_length):  # journal at its cap
        await ledger.apply(invoice, 299_999)
    assert await redis_client.llen(k.journal) == ledger.journal_length
    usage[k.journal] = int(await redis_client.memory_usage(k.journal, samples=0) or 0)
    encoding = await redis_client.object("encoding", k.invoice_customer)
    per_100k = sum(usage.values()) - usage[k.journal]
    with capsys.disabled():
        print(
            f"\nledger memory, {result.invoices} invoices over {result.customers} customers "
            f"({encoding}): "
            + ", ".join(f"{key.rsplit(':', 1)[1]}={n / 1e6:.2f} MB" for key, n in usage.items())
            + f"; {per_100k / 1e6:.2f} MB per 100,000 invoices without the journal"
        )
    assert per_100k < 12_000_000
    assert usage[k.journal] < 1_500_000
