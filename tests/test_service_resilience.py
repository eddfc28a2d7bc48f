"""The service when things go wrong: restarts, Redis dying, many replicas, killed holders."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from simpro_counter.simulator import RunningSimulator, Simulator, SimulatorConfig, running_simulator
from simpro_counter.store import EmbeddedRedis
from tests.redis_fixtures import sync_client
from tests.service_fixtures import (
    ADMIN_TOKEN,
    running_app,
    service_process,
    service_settings,
    wait_for_count,
    wait_until_counted,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_restart_serves_the_persisted_value_with_no_simpro_request(tmp_path: Path) -> None:
    simulator = Simulator(SimulatorConfig(invoices=700, customers=150, seed=2, rate=0))
    settings = service_settings(None, data_dir=tmp_path / "data")  # the embedded Redis
    async with running_app(settings, simulator.transport()) as (_, client):
        first = await wait_for_count(client)
    # The app stopped, and with it its embedded redis-server. Start both again.
    simulator.stats.reset()
    async with running_app(settings, simulator.transport()) as (_, client):
        started = time.monotonic()
        again = (await client.get("/api/simpro/customers")).json()
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.2)  # give the scheduler's start-up check time to (not) act
    assert again["count"] == first["count"] == simulator.truth().customers
    assert again["lastUpdated"] == first["lastUpdated"]
    assert again["source"] == "redis"
    assert simulator.stats.total == 0


async def test_redis_killed_while_serving(redis_server: EmbeddedRedis) -> None:
    simulator = Simulator(SimulatorConfig(invoices=700, customers=150, seed=4, rate=0))
    settings = service_settings(redis_server.url)
    async with running_app(settings, simulator.transport()) as (_, client):
        before = await wait_for_count(client)
        await asyncio.to_thread(redis_server.stop)

        # Reads keep answering, fast; within moments the store notices and says "memory".
        deadline = time.monotonic() + 5
        while True:
            started = time.monotonic()
            response = await client.get("/api/simpro/customers")
            assert time.monotonic() - started < 0.3  # a dead Redis costs milliseconds
            assert response.status_code == 200
            assert response.json()["count"] == before["count"]
            if response.json()["source"] == "memory" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert response.json()["source"] == "memory"

        # A refresh while Redis is down publishes to memory ...
        simulator.dataset.add_invoice(customer_id=simulator.dataset.uninvoiced_customer_ids()[0])
        refreshed = await client.post("/api/simpro/customers/refresh", headers=AUTH)
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["storage"] == "memory"
        assert refreshed.json()["count"] == before["count"] + 1

        # ... and reaches Redis once it is back.
        await asyncio.to_thread(redis_server.start)
        for _ in range(200):
            body = (await client.get("/api/simpro/customers")).json()
            if body["source"] == "redis":
                break
            await asyncio.sleep(0.05)
        assert body["source"] == "redis"
        assert body["count"] == before["count"] + 1
        with sync_client(redis_server) as plain:
            assert plain.get(f"{settings.key_prefix}:customer_count") == str(before["count"] + 1)


def _env(simulator: RunningSimulator, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "SIMPRO_BASE_URL": simulator.url,
        "SIMPRO_API_KEY": "demo-key",
        "SIMPRO_RATE_LIMIT": "1000",
        "REDIS_URL": redis_url,
        "KEY_PREFIX": prefix,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "REFRESH_CHECK_INTERVAL": "3600",
        **extra,
    }


def test_twenty_concurrent_refreshes_across_three_processes_scan_once(
    redis_url: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(invoices=3000, customers=500, seed=6, rate=0, latency=0.2)
    with running_simulator(config) as sim:
        env = _env(sim, redis_url, "many")
        with (
            service_process(env, tmp_path) as a,
            service_process(env, tmp_path) as b,
            service_process(env, tmp_path) as c,
        ):
            urls = [a.url, b.url, c.url]
            wait_until_counted(urls[0])  # the start-up refresh (one of them won the lock)
            sim.simulator.stats.reset()

            def post(i: int) -> int:
                url = urls[i % 3]
                return httpx.post(
                    f"{url}/api/simpro/customers/refresh", headers=AUTH, timeout=60
                ).status_code

            with ThreadPoolExecutor(20) as pool:
                statuses = list(pool.map(post, range(20)))
            scan_requests = sim.simulator.stats.total
        assert sorted(statuses) == [200] + [409] * 19
        # One scan of 3,000 invoices: 12 pages, the catch-up and the final count.
        assert scan_requests == 14


def test_a_killed_lock_holder_frees_the_lock_within_its_ttl(redis_url: str, tmp_path: Path) -> None:
    config = SimulatorConfig(invoices=3000, customers=500, seed=8, rate=0)
    with running_simulator(config) as sim:
        env = _env(
            sim,
            redis_url,
            "killed",
            REFRESH_LOCK_TTL="3",
            SIMPRO_PAGE_SIZE="50",
            SIMPRO_MAX_IN_FLIGHT="1",
        )
        with service_process(env, tmp_path) as holder, service_process(env, tmp_path) as other:
            wait_until_counted(other.url)
            sim.simulator.latency.mean = 0.5  # a scan now takes half a minute
            accepted = httpx.post(
                f"{holder.url}/api/simpro/customers/refresh?background=true", headers=AUTH
            )
            assert accepted.status_code == 202
            time.sleep(1.0)
            busy = httpx.post(f"{other.url}/api/simpro/customers/refresh", headers=AUTH)
            assert busy.status_code == 409

            holder.process.send_signal(signal.SIGKILL)  # no chance to release the lock
            holder.process.wait()
            killed_at = time.monotonic()
            sim.simulator.latency.mean = 0.0
            while True:
                response = httpx.post(
                    f"{other.url}/api/simpro/customers/refresh?background=true", headers=AUTH
                )
                if response.status_code != 409 or time.monotonic() - killed_at > 10:
                    break
                time.sleep(0.1)
            freed_after = time.monotonic() - killed_at
            assert response.status_code == 202, response.text
            assert freed_after < 3 + 0.5  # the lock's TTL, plus one poll
            status = _wait_until_idle(other.url)
        assert status["lastError"] is None
        assert status["count"] == sim.simulator.truth().customers


def _wait_until_idle(url: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        status: dict[str, object] = httpx.get(f"{url}/api/simpro/customers/refresh").json()
        if not status["isRefreshing"]:
            return status
        if time.monotonic() > deadline:
            raise AssertionError("the refresh did not finish within 60 s")
        time.sleep(0.1)
