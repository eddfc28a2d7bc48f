"""ResilientStore against a real redis-server that is killed, hung and restarted."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from simpro_counter.store import (
    EmbeddedRedis,
    MetricValue,
    RedisStore,
    RefreshStatus,
    ResilientStore,
    connect,
)
from tests.chaos.scenario import kill_redis, truncate_aof
from tests.redis_fixtures import free_port, sync_client

pytest_plugins = ["tests.redis_fixtures"]

MakeStore = Callable[[], Awaitable[ResilientStore]]


def value(count: int, fence: int) -> MetricValue:
    return MetricValue("customers", count, computed_at=time.time(), ttl=21600, fence=fence)


async def wait_until(check: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> float:
    """Poll `check` every 2 ms; the seconds it took to become true."""
    started = time.monotonic()
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"still false after {within} s")
        await asyncio.sleep(0.002)


def mget_calls(server: EmbeddedRedis) -> int:
    """How many MGETs (the store's read) the server has executed."""
    with sync_client(server) as client:
        stats: dict[str, dict[str, int]] = client.info("commandstats")
    return stats.get("cmdstat_mget", {}).get("calls", 0)


@pytest.fixture
async def make_store(redis_server: EmbeddedRedis) -> AsyncIterator[MakeStore]:
    """Makes started ResilientStores ("replicas"), each with its own client."""
    made: list[ResilientStore] = []

    async def make() -> ResilientStore:
        store = ResilientStore(connect(redis_server.url), probe_initial=0.05, probe_max=0.2)
        await store.start()
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
        await store.redis.client.aclose()


async def test_reads_are_served_without_a_redis_round_trip(
    redis_server: EmbeddedRedis, make_store: MakeStore
) -> None:
    store = await make_store()
    await wait_until(lambda: store.subscribed)
    published = value(450, await store.next_fence("customers"))
    assert await store.publish(published)
    assert await store.read("jobs") is None
    await asyncio.sleep(0.2)  # let the publish's own message be handled

    before = mget_calls(redis_server)
    started = time.perf_counter()
    for _ in range(1000):
        assert await store.read("customers") == published
        assert await store.read("jobs") is None  # known absent is cached too
    elapsed = time.perf_counter() - started
    assert mget_calls(redis_server) == before
    assert elapsed < 0.2, f"2000 near-cache reads took {elapsed:.3f} s"
    assert store.storage == "redis"


async def test_a_publish_on_another_replica_is_seen_within_100_ms(
    make_store: MakeStore,
) -> None:
    reader, writer = await make_store(), await make_store()
    await wait_until(lambda: reader.subscribed and writer.subscribed)
    assert await reader.read("customers") is None  # cached as absent from now on

    delays = []
    for count in (450, 451, 452):
        published = value(count, await writer.next_fence("customers"))
        assert await writer.publish(published)

        async def seen(expected: MetricValue = published) -> bool:
            return await reader.read("customers") == expected

        delays.append(await wait_until(seen, within=1.0))
    assert max(delays) < 0.1, delays


async def test_redis_down_serves_memory_fast_and_writes_back_when_it_returns(
    redis_server: EmbeddedRedis, make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = await make_store()
    before = value(450, await store.next_fence("customers"))
    assert await store.publish(before)

    with caplog.at_level(logging.WARNING, logger="simpro_counter.store"):
        redis_server.stop()
        slowest = 0.0
        # Longer than the near-cache is trusted without a subscription, so reads reach
        # the dead Redis, open the circuit and go on from memory.
        for _ in range(120):
            started = time.perf_counter()
            assert await store.read("customers") == before
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0.01)
        assert slowest < 0.05, f"a read took {slowest:.3f} s"
        assert store.storage == "memory"
        assert not store.redis_healthy
        assert store.last_redis_error

        fence = await store.next_fence("customers")
        assert fence > before.fence
        during = value(451, fence)
        assert await store.publish(during)
        assert await store.read("customers") == during
        await store.write_status(RefreshStatus("customers", last_success_at=1.0))
        await store.push_history({"count": 451})

        redis_server.start()
        await wait_until(lambda: store.storage == "redis")

    assert "Redis unreachable (ConnectionError" in caplog.text
    assert "serving from memory" in caplog.text
    assert f"Redis is back (127.0.0.1:{redis_server.port}" in caplog.text
    with sync_client(redis_server) as plain:
        assert plain.get("simpro:customer_count") == "451"
        assert int(plain.get("simpro:customer_count_fence") or 0) >= fence
        assert json.loads(plain.get("simpro:customer_count_status") or "{}")["last_success_at"]
        assert plain.lrange("simpro:refresh_history", 0, -1) == ['{"count":451}']
    assert await store.read("customers") == during


async def test_a_newer_redis_value_is_not_overwritten_by_the_memory_one(
    redis_server: EmbeddedRedis, make_store: MakeStore
) -> None:
    store = await make_store()
    assert await store.publish(value(100, await store.next_fence("customers")))
    redis_server.stop()
    assert not await store.ping()
    assert await store.publish(value(200, await store.next_fence("customers")))

    # Meanwhile a replica this one cannot reach publishes a newer value into the same
    # data: the same Redis files served on another port for a moment.
    elsewhere = EmbeddedRedis(redis_server.data_dir, port=free_port())
    with elsewhere:
        client = connect(elsewhere.url)
        try:
            assert await RedisStore(client).publish(value(300, 10))
        finally:
            await client.aclose()

    redis_server.start()
    await wait_until(lambda: store.storage == "redis")
    with sync_client(redis_server) as plain:
        assert plain.get("simpro:customer_count") == "300"
    read = await store.read("customers")
    assert read is not None
    assert read.value == 300


async def test_locks_carry_over_an_outage(
    redis_server: EmbeddedRedis, make_store: MakeStore
) -> None:
    store = await make_store()
    assert await store.acquire_lock("customers", "before", 15_000)
    redis_server.stop()
    assert not await store.ping()

    assert await store.extend_lock("customers", "before", 15_000)  # carried into memory
    assert await store.lock_held("customers")
    assert not await store.acquire_lock("customers", "other", 15_000)
    assert await store.acquire_lock("jobs", "during", 15_000)  # memory only

    redis_server.start()
    await wait_until(lambda: store.storage == "redis")
    assert await store.extend_lock("jobs", "during", 15_000)  # carried into Redis
    with sync_client(redis_server) as plain:
        assert plain.get("simpro:jobs_value_lock") == "during"
    assert await store.release_lock("customers", "before")
    assert await store.release_lock("jobs", "during")
    assert not await store.lock_held("customers")
    assert not await store.lock_held("jobs")


async def test_a_hung_redis_costs_one_timeout_then_nothing(
    redis_server: EmbeddedRedis, make_store: MakeStore
) -> None:
    store = await make_store()
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        await store.next_fence("customers")
        first = time.perf_counter() - started
        assert store.storage == "memory"
        started = time.perf_counter()
        for _ in range(100):
            last = await store.next_fence("customers")
        rest = time.perf_counter() - started
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    assert first < 0.6, f"the first call waited {first:.3f} s"
    assert rest < 0.05, f"100 calls with the circuit open took {rest:.3f} s"

    await wait_until(lambda: store.storage == "redis")
    # Fences handed out from memory are not handed out again by Redis.
    assert await store.next_fence("customers") > last


async def test_the_subscription_reconnects_by_itself(
    redis_server: EmbeddedRedis, make_store: MakeStore
) -> None:
    reader, writer = await make_store(), await make_store()
    await wait_until(lambda: reader.subscribed)
    assert await reader.read("customers") is None
    with sync_client(redis_server) as plain:
        assert plain.client_kill_filter(_type="pubsub") >= 1

    published = value(450, await writer.next_fence("customers"))
    assert await writer.publish(published)

    async def seen() -> bool:
        return await reader.read("customers") == published

    # The new subscription drops what the near-cache held, so the reader re-reads.
    assert await wait_until(seen, within=2.0) < 0.5
    await wait_until(lambda: reader.subscribed)
    assert reader.storage == "redis"


async def test_a_redis_that_lost_the_newest_value_gets_it_back(
    redis_server: EmbeddedRedis, make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = await make_store()
    await wait_until(lambda: store.subscribed)
    older = value(450, await store.next_fence("customers"))
    assert await store.publish(older)
    newest = value(451, await store.next_fence("customers"))
    assert await store.publish(newest)
    # A crash that cuts the AOF short in the newest value's write: redis-server comes
    # back (aof-load-truncated) holding the older one, and the fence counter from before.
    kill_redis(redis_server)
    assert truncate_aof(redis_server.data_dir, "simpro:customer_count") > 0
    redis_server.start()
    with sync_client(redis_server) as plain:
        assert plain.get("simpro:customer_count") == "450"

    with caplog.at_level(logging.WARNING, logger="simpro_counter.store"):
        # The store notices the restart (its subscription drops) and reads Redis again:
        # never the older value, and Redis holds the newest again.
        noticed = False
        for _ in range(500):
            assert await store.read("customers") == newest
            noticed = noticed or not store.subscribed
            if noticed and store.storage == "redis" and store.subscribed:
                break
            await asyncio.sleep(0.01)
        assert noticed
        assert store.storage == "redis"
        assert store.subscribed
        for _ in range(20):  # read-throughs of the restarted Redis, then near-cache hits
            assert await store.read("customers") == newest
            await asyncio.sleep(0.01)
    with sync_client(redis_server) as plain:
        assert plain.get("simpro:customer_count") == "451"
    assert "it lost writes" in caplog.text
    # The next refresh still gets the highest fence.
    assert await store.next_fence("customers") > newest.fence
