"""The scheduler refreshes a stale value (incrementally, or fully once a day); with two
replicas only one of them works."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace

from simpro_counter.refresh import CUSTOMERS
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.web.runtime import Runtime
from tests.service_fixtures import running_app, service_settings, wait_for_count


async def test_a_stale_value_is_refreshed_by_exactly_one_replica(redis_url: str) -> None:
    simulator = Simulator(SimulatorConfig(invoices=600, customers=120, seed=12, rate=0))
    settings = service_settings(redis_url)
    async with (
        running_app(settings, simulator.transport()) as (first, client),
        running_app(settings, simulator.transport()) as (second, _),
    ):
        await wait_for_count(client)
        runtime_a: Runtime = first.state.runtime
        runtime_b: Runtime = second.state.runtime
        value = await runtime_a.store.read(CUSTOMERS)
        assert value is not None
        # Make the stored value seven hours old (the TTL is six): a published, older value
        # with a newer fence, as a refresh long ago would have left it.
        old = replace(value, computed_at=time.time() - 7 * 3600, fence=value.fence + 1)
        assert await runtime_a.store.publish(old)
        assert old.is_stale(time.time())
        # (Not read through the API here: a stale read starts a refresh of its own.)
        await _idle(runtime_a, runtime_b)  # the start-up refresh records its status last
        simulator.stats.reset()

        started = await runtime_a.scheduler.check_once() + await runtime_b.scheduler.check_once()
        assert started  # at least one replica saw it due
        for _ in range(200):
            fresh = await runtime_b.store.read(CUSTOMERS)
            if fresh is not None and not fresh.is_stale(time.time()):
                break
            await asyncio.sleep(0.05)
        assert fresh is not None
        assert not fresh.is_stale(time.time())
        assert fresh.value == simulator.truth().customers
        # The value has a sync cursor and its last full scan is recent: one replica synced
        # what changed since (nothing), one request in all.
        assert simulator.stats.total == 1
        assert fresh.details["lastSync"]["changed"] == 0

        await _idle(runtime_a, runtime_b)
        # A day after the last full scan, the next stale value gets a full reconciliation.
        details = {**fresh.details, "fullScanAt": time.time() - 2 * 86400}
        old = replace(fresh.with_details(details), computed_at=time.time() - 7 * 3600)
        assert await runtime_a.store.publish(old)
        simulator.stats.reset()
        assert await runtime_a.scheduler.check_once() == ["customers"]
        for _ in range(200):
            fresh = await runtime_a.store.read(CUSTOMERS)
            if fresh is not None and not fresh.is_stale(time.time()):
                break
            await asyncio.sleep(0.05)
        assert fresh is not None
        assert fresh.details["fullScanAt"] > time.time() - 60
        # A full scan: its pages, the catch-up and the final count.
        assert simulator.stats.total == math.ceil(600 / 250) + 2


async def _idle(*runtimes: Runtime) -> None:
    """Until no refresh runs anywhere (it releases its lock after recording its status)."""
    for _ in range(400):
        if not any([await runtime.refresher.is_refreshing() for runtime in runtimes]):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("a refresh kept running")


async def test_a_value_from_before_the_upgrade_or_another_filter_gets_one_full_scan(
    redis_url: str,
) -> None:
    simulator = Simulator(SimulatorConfig(invoices=600, customers=120, seed=14, rate=0))
    async with running_app(service_settings(redis_url), simulator.transport()) as (app, client):
        await wait_for_count(client)
        runtime: Runtime = app.state.runtime
        await _idle(runtime)
        value = await runtime.store.read(CUSTOMERS)
        assert value is not None
        # Fresh, but left by the previous version: no filter recorded, no ledger format.
        details = {
            k: v for k, v in value.details.items() if k not in ("invoiceFilter", "ledgerFormat")
        }
        assert await runtime.store.publish(
            replace(value.with_details(details), fence=value.fence + 1)
        )
        assert await runtime.scheduler.check_once() == ["customers"]
        for _ in range(200):
            rebuilt = await runtime.store.read(CUSTOMERS)
            if rebuilt is not None and runtime.refresher.built_on_ledger(rebuilt):
                break
            await asyncio.sleep(0.05)
        assert rebuilt is not None
        assert runtime.refresher.built_on_ledger(rebuilt)
        revenue = await runtime.store.read("revenue")
        assert revenue is not None
        assert revenue.value == simulator.truth().revenue * 100
        await _idle(runtime)

        # A scan whose ledger rebuild failed (Redis was down) records the filter it ran
        # under: it is not scanned again and again.
        failed_rebuild = {k: v for k, v in rebuilt.details.items() if k != "ledgerFormat"}
        assert await runtime.store.publish(
            replace(rebuilt.with_details(failed_rebuild), fence=rebuilt.fence + 1)
        )
        assert await runtime.scheduler.check_once() == []


async def test_a_value_whose_ledger_rebuild_failed_is_scanned_again_later(
    redis_url: str,
) -> None:
    simulator = Simulator(SimulatorConfig(invoices=600, customers=120, seed=15, rate=0))
    settings = service_settings(redis_url, refresh_check_interval=60.0)
    async with running_app(settings, simulator.transport()) as (app, client):
        await wait_for_count(client)
        runtime: Runtime = app.state.runtime
        await _idle(runtime)
        value = await runtime.store.read(CUSTOMERS)
        assert value is not None
        # What a full scan publishes when Redis fails its ledger rebuild: the scan's counts
        # under its filter, with no ledger version (webhook events cannot move them).
        details = {
            k: v for k, v in value.details.items() if k not in ("ledgerVersion", "ledgerFormat")
        }
        unbuilt = replace(value.with_details(details), fence=value.fence + 1)
        assert await runtime.store.publish(unbuilt)
        assert runtime.refresher.ledger_rebuild_failed(unbuilt)
        assert await runtime.scheduler.check_once() == []  # not a scan at every check
        # Five checks later (5 x 60 s) it is scanned again, and the ledger rebuilt.
        later = replace(unbuilt, computed_at=time.time() - 301)
        assert await runtime.store.publish(later)
        assert await runtime.scheduler.check_once() == ["customers"]
        for _ in range(200):
            rebuilt = await runtime.store.read(CUSTOMERS)
            if rebuilt is not None and runtime.refresher.built_on_ledger(rebuilt):
                break
            await asyncio.sleep(0.05)
        assert rebuilt is not None
        assert runtime.refresher.built_on_ledger(rebuilt)
        assert rebuilt.value == simulator.truth().customers
        await _idle(runtime)
