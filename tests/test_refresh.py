"""Each piece of a refresh on its own, against the memory store and a real Redis, with the
simulator's truth: the lock (exclusive, kept alive, released, taken back), the recorder
(statuses of every metric of a group, the history, the histogram) and the three
strategies (count, incremental, full), then the refresher choosing between them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import pytest

from simpro_counter.errors import RefreshRunningError
from simpro_counter.keys import Keys
from simpro_counter.metrics import INVOICE_GROUP, InvoiceFilter, group_members
from simpro_counter.refresh import (
    CountStrategy,
    FullStrategy,
    IncrementalStrategy,
    Refresher,
    RefreshLock,
    RefreshRecorder,
    SimproSource,
)
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.store import MemoryStore, ResilientStore, Store, connect
from simpro_counter.store.ledger import LEDGER_FORMAT, InvoiceLedgerStore
from simpro_counter.telemetry import Telemetry
from tests.conftest import client_config

pytest_plugins = ["tests.redis_fixtures"]

INVOICE_METRICS = ("customers", "invoices", "revenue")


class Clock:
    """A clock the test moves: statuses and provenance carry its readings exactly."""

    def __init__(self, now: float = 1_770_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@dataclass
class Parts:
    store: Store
    ledger: InvoiceLedgerStore | None
    """Only with Redis: the ledger lives there."""
    simulator: Simulator
    telemetry: Telemetry
    clock: Clock

    @property
    def source(self) -> SimproSource:
        return SimproSource(client_config(), self.telemetry, self.simulator.transport())

    def refresher(self, **overrides: object) -> Refresher:
        return Refresher(
            self.store,
            client_config(),
            ttl=60,
            telemetry=self.telemetry,
            transport=self.simulator.transport(),
            ledger=self.ledger,
            clock=self.clock,
            **overrides,  # type: ignore[arg-type]
        )

    def truth(self) -> dict[str, int]:
        truth = self.simulator.truth()
        return {
            "customers": truth.customers,
            "invoices": truth.invoices,
            "revenue": int(truth.revenue * 100),
        }


@asynccontextmanager
async def running_parts(redis_url: str | None) -> AsyncIterator[Parts]:
    """The pieces on a memory store (no ledger), or on a real Redis with its ledger."""
    simulator = Simulator(SimulatorConfig(invoices=600, customers=150, seed=31, rate=0))
    if redis_url is None:
        yield Parts(MemoryStore(), None, simulator, Telemetry(), Clock())
        return
    client = connect(redis_url)
    keys = Keys(f"refresh-{uuid.uuid4().hex[:8]}")
    store = ResilientStore(client, keys)
    await store.start()
    try:
        yield Parts(store, InvoiceLedgerStore(client, keys), simulator, Telemetry(), Clock())
    finally:
        await store.aclose()
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def parts(request: pytest.FixtureRequest) -> AsyncIterator[Parts]:
    redis_url = None if request.param == "memory" else request.getfixturevalue("redis_url")
    async with running_parts(redis_url) as running:
        yield running


@pytest.fixture
async def on_redis(redis_url: str) -> AsyncIterator[Parts]:
    """For what needs the ledger (it lives in Redis): drift and incremental syncs."""
    async with running_parts(redis_url) as running:
        yield running


# The lock --------------------------------------------------------------------------------


async def test_the_lock_is_exclusive_until_released(parts: Parts) -> None:
    async with RefreshLock(parts.store, "customers"):
        assert await parts.store.lock_held("customers")
        with pytest.raises(RefreshRunningError):
            async with RefreshLock(parts.store, "customers"):
                pass  # pragma: no cover
        async with RefreshLock(parts.store, "jobs"):  # another group's is its own
            assert await parts.store.lock_held("jobs")
    assert not await parts.store.lock_held("customers")
    async with RefreshLock(parts.store, "customers"):
        assert await parts.store.lock_held("customers")


async def test_the_heartbeat_keeps_the_lock_past_its_ttl(parts: Parts) -> None:
    async with RefreshLock(parts.store, "customers", ttl=0.5) as lock:
        await asyncio.sleep(1.6)  # three TTLs: held only because the heartbeat extended it
        assert not lock.lost
        assert not await parts.store.acquire_lock("customers", "other", 10_000)
    assert await parts.store.acquire_lock("customers", "other", 10_000)


async def test_the_lock_is_released_when_the_body_fails(parts: Parts) -> None:
    with pytest.raises(ValueError, match="scan failed"):
        async with RefreshLock(parts.store, "customers"):
            raise ValueError("scan failed")
    assert not await parts.store.lock_held("customers")


async def test_a_holder_whose_lock_was_taken_is_stopped_and_the_taker_keeps_it(
    parts: Parts,
) -> None:
    lock = RefreshLock(parts.store, "customers", ttl=0.3)
    reached_the_end = False

    async def holder() -> None:
        nonlocal reached_the_end
        async with lock:
            # As if the lock had expired and another replica had taken it.
            assert await parts.store.release_lock("customers", lock.token)
            assert await parts.store.acquire_lock("customers", "taker", 10_000)
            await asyncio.sleep(2.0)
            reached_the_end = True  # pragma: no cover

    task = asyncio.create_task(holder())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert lock.lost
    assert not reached_the_end
    assert await parts.store.lock_held("customers")  # the taker's is left alone
    assert not await parts.store.acquire_lock("customers", "third", 10_000)


# The recorder ----------------------------------------------------------------------------


async def test_a_success_is_recorded_for_every_metric_of_the_group_and_once_in_history(
    parts: Parts,
) -> None:
    recorder = RefreshRecorder(parts.store, parts.telemetry, parts.clock)
    run = await recorder.start(INVOICE_GROUP)
    running = await parts.store.read_status(INVOICE_GROUP)
    assert running is not None
    assert running.last_started_at == run.started
    values = {"customers": 5, "invoices": 7, "revenue": 12345}
    report = {"count": 5, "requests": 3, "duration": 0.5}
    finished = await recorder.succeeded(run, "full", values, report, in_history=True)

    reports = {}
    for name in group_members(INVOICE_GROUP):
        status = await parts.store.read_status(name)
        assert status is not None
        assert (status.last_started_at, status.last_finished_at) == (run.started, finished)
        assert status.last_success_at == finished
        assert status.last_error is None
        reports[name] = status.last_report
    shared = {"mode": "full", "requests": 3, "duration": 0.5}
    assert reports == {
        "customers": {**shared, "count": 5},
        "invoices": {**shared, "count": 7},
        "revenue": {**shared, "total": "123.45"},
    }
    history = await parts.store.history()
    assert [entry["metric"] for entry in history] == [INVOICE_GROUP]
    assert history[0] == {"metric": "customers", "finishedAt": finished, "ok": True,
                          **reports["customers"]}  # fmt: skip
    observed = parts.telemetry.registry.get_sample_value(
        "simpro_counter_refresh_duration_seconds_count",
        {"metric": "customers", "outcome": "full"},
    )
    assert observed == 1


async def test_a_failure_keeps_the_last_report_and_stays_out_of_history_if_asked(
    parts: Parts,
) -> None:
    recorder = RefreshRecorder(parts.store, parts.telemetry, parts.clock)
    first = await recorder.start("jobs")
    await recorder.succeeded(first, "full", {"jobs": 40}, {"requests": 1}, in_history=True)
    second = await recorder.start("jobs")
    await recorder.failed(second, RuntimeError("Simpro is down"), in_history=True)
    third = await recorder.start("jobs")
    await recorder.failed(third, RuntimeError("still down"), in_history=False)

    status = await parts.store.read_status("jobs")
    assert status is not None
    assert status.last_error == "still down"
    assert status.last_error_at == status.last_finished_at
    assert status.last_success_at is not None
    assert status.last_success_at < third.started
    assert status.last_report == {"mode": "full", "requests": 1, "count": 40}
    history = await parts.store.history()
    assert [(entry["ok"], entry.get("error")) for entry in history] in (
        [(False, "Simpro is down"), (True, None)],  # newest first
        [(True, None), (False, "Simpro is down")],
    )


# The strategies --------------------------------------------------------------------------


async def test_a_count_is_one_request_for_the_result_total(parts: Parts) -> None:
    computed = await CountStrategy(parts.source, "jobs").compute()
    assert computed.values == {"jobs": parts.simulator.truth().jobs}
    assert computed.run_report["requests"] == parts.simulator.stats.total == 1
    assert computed.provenance.as_json() == {}  # nothing orders or syncs a count


async def test_a_full_scan_finds_the_truth_and_records_where_it_comes_from(parts: Parts) -> None:
    invoice_filter = InvoiceFilter()
    strategy = FullStrategy(parts.source, parts.store, parts.ledger, invoice_filter, parts.clock)
    computed = await strategy.compute()
    assert computed.values == parts.truth()
    provenance = computed.provenance
    assert provenance.invoice_filter == invoice_filter.describe()
    assert provenance.cursor
    assert provenance.full_scan_at == parts.clock.now
    assert computed.report["totalInvoices"] == parts.simulator.truth().invoices
    assert computed.run_report["cursor"] == provenance.cursor
    if parts.ledger is None:
        assert (provenance.ledger_version, provenance.ledger_format) == (None, None)
    else:
        counts = await parts.ledger.counts()
        assert provenance.ledger_version == counts.version
        assert provenance.ledger_format == LEDGER_FORMAT
        assert counts.metric_values() == parts.truth()  # rebuilt from the scan


async def test_a_full_scan_reports_what_the_kept_count_had_drifted(on_redis: Parts) -> None:
    refresher = on_redis.refresher()
    await refresher.refresh_all(INVOICE_GROUP)
    # Deletions never reach the ledger by a list of changes: the kept count drifts.
    dataset = on_redis.simulator.dataset
    only_invoice = dataset.add_invoice(dataset.uninvoiced_customer_ids()[0], Decimal("9.00"))
    await refresher.refresh_all(INVOICE_GROUP)  # the ledger now counts that customer
    dataset.delete_invoice(only_invoice)
    strategy = FullStrategy(
        on_redis.source, on_redis.store, on_redis.ledger, InvoiceFilter(), on_redis.clock
    )
    computed = await strategy.compute()
    assert computed.report["drift"] == -1
    assert computed.values == on_redis.truth()


async def test_an_incremental_sync_applies_only_the_changes_to_the_ledger(
    on_redis: Parts,
) -> None:
    assert on_redis.ledger is not None
    await on_redis.refresher().refresh_all(INVOICE_GROUP)
    current = await on_redis.store.read(INVOICE_GROUP)
    assert current is not None
    dataset = on_redis.simulator.dataset
    dataset.add_invoice(dataset.uninvoiced_customer_ids()[0], Decimal("250.00"))
    on_redis.simulator.stats.reset()

    strategy = IncrementalStrategy(on_redis.source, on_redis.ledger, current, InvoiceFilter())
    computed = await strategy.compute()
    assert computed.values == on_redis.truth()
    assert on_redis.simulator.stats.total == 1  # one page of changes
    assert computed.run_report["changed"] >= 1
    assert computed.report["lastSync"] == computed.run_report
    assert computed.report["totalInvoices"] == current.report["totalInvoices"]  # the scan's
    provenance = computed.provenance
    assert provenance.ledger_version == (await on_redis.ledger.counts()).version
    assert provenance.ledger_version > current.ledger_version
    assert provenance.full_scan_at == current.provenance.full_scan_at
    assert provenance.invoice_filter == current.provenance.invoice_filter


# The refresher choosing and publishing ---------------------------------------------------


async def test_a_refresh_publishes_the_truth_records_it_and_releases_its_lock(
    parts: Parts,
) -> None:
    values = await parts.refresher().refresh_all(INVOICE_GROUP)
    assert {name: value.value for name, value in values.items()} == parts.truth()
    for name in INVOICE_METRICS:
        stored = await parts.store.read(name)
        assert stored is not None
        assert stored.value == parts.truth()[name]
        status = await parts.store.read_status(name)
        assert status is not None
        assert status.last_report["mode"] == "full"
    revenue = await parts.store.read("revenue")
    assert revenue is not None
    assert revenue.report["currency"] == "AUD"
    assert not await parts.store.lock_held(INVOICE_GROUP)


async def test_incremental_is_chosen_only_where_a_sync_can_run(parts: Parts) -> None:
    refresher = parts.refresher()
    await refresher.refresh_all(INVOICE_GROUP, mode="incremental")  # nothing to sync from
    first = await parts.store.read_status(INVOICE_GROUP)
    assert first is not None
    assert first.last_report["mode"] == "full"
    parts.simulator.stats.reset()
    await refresher.refresh_all(INVOICE_GROUP, mode="incremental")
    second = await parts.store.read_status(INVOICE_GROUP)
    assert second is not None
    # With Redis the value has a cursor and a ledger: one request. In memory: a scan.
    expected = "incremental" if parts.ledger is not None else "full"
    assert second.last_report["mode"] == expected
    assert (parts.simulator.stats.total == 1) == (parts.ledger is not None)
    jobs = await refresher.refresh_all("jobs", mode="incremental")
    assert jobs["jobs"].value == parts.simulator.truth().jobs
