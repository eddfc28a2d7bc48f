"""What every store promises (the `Store` protocol), checked on Redis and memory alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from simpro_counter.keys import HISTORY_LENGTH
from simpro_counter.store import (
    EmbeddedRedis,
    MemoryStore,
    MetricValue,
    RedisStore,
    RefreshStatus,
    ResilientStore,
    Store,
    connect,
)

pytest_plugins = ["tests.redis_fixtures"]


def value(count: int, fence: int, metric: str = "customers") -> MetricValue:
    return MetricValue(
        metric=metric,
        value=count,
        computed_at=round(time.time(), 3),
        ttl=21600,
        fence=fence,
        report={"totalInvoices": 2847, "duration": 12.5},
    )


@pytest.fixture(params=["memory", "redis", "resilient"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server: EmbeddedRedis = request.getfixturevalue("redis_server")
    client = connect(server.url)
    try:
        if request.param == "redis":
            yield RedisStore(client)
        else:
            async with ResilientStore(client) as resilient:
                yield resilient
    finally:
        await client.aclose()


async def test_publish_then_read_round_trip(store: Store) -> None:
    assert await store.read("customers") is None
    published = value(450, fence=1)
    assert await store.publish(published)
    assert await store.read("customers") == published
    assert await store.read("jobs") is None


async def test_a_lower_fence_is_refused_and_leaves_the_value(store: Store) -> None:
    newer = value(450, fence=5)
    assert await store.publish(newer)
    assert not await store.publish(value(999, fence=4))
    assert await store.read("customers") == newer
    # The same fence may publish again (a retried publish of one refresh).
    assert await store.publish(value(451, fence=5))
    read = await store.read("customers")
    assert read is not None
    assert read.value == 451


async def test_fences_only_go_up(store: Store) -> None:
    fences = [await store.next_fence("customers") for _ in range(3)]
    assert fences == sorted(set(fences))
    assert await store.next_fence("jobs") >= 1


async def test_lock_is_compare_and_set(store: Store) -> None:
    assert await store.acquire_lock("customers", "a", 10_000)
    assert await store.lock_held("customers")
    assert not await store.acquire_lock("customers", "b", 10_000)
    assert not await store.extend_lock("customers", "b", 10_000)
    assert await store.extend_lock("customers", "a", 10_000)
    assert not await store.release_lock("customers", "b")
    assert await store.lock_held("customers")
    assert await store.release_lock("customers", "a")
    assert not await store.lock_held("customers")
    assert not await store.release_lock("customers", "a")


async def test_an_expired_lock_is_free(store: Store) -> None:
    assert await store.acquire_lock("customers", "crashed", 50)
    await asyncio.sleep(0.1)
    assert not await store.lock_held("customers")
    assert not await store.extend_lock("customers", "crashed", 10_000)
    assert await store.acquire_lock("customers", "next", 10_000)


async def test_status_round_trip(store: Store) -> None:
    assert await store.read_status("customers") is None
    status = RefreshStatus(
        "customers", last_started_at=1.0, last_error="Simpro answered 503", last_report={"a": 1}
    )
    await store.write_status(status)
    assert await store.read_status("customers") == status


async def test_history_keeps_the_most_recent_first(store: Store) -> None:
    for n in range(HISTORY_LENGTH + 5):
        await store.push_history({"n": n})
    history = await store.history()
    assert len(history) == HISTORY_LENGTH
    assert [entry["n"] for entry in history[:2]] == [HISTORY_LENGTH + 4, HISTORY_LENGTH + 3]


async def test_ping(store: Store) -> None:
    assert await store.ping()
