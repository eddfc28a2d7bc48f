"""RedisStore specifics: the key layout the original deployment shares, pub/sub, errors."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from simpro_counter.errors import StoreError
from simpro_counter.keys import Keys
from simpro_counter.store import EmbeddedRedis, MetricValue, RedisStore

pytest_plugins = ["tests.redis_fixtures"]


def value(count: int, fence: int = 1) -> MetricValue:
    return MetricValue("customers", count, computed_at=1_770_000_000.25, ttl=21600, fence=fence)


async def test_keys_as_the_original_named_them_and_without_expiry(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisStore(redis_client, Keys("fyrup"))
    assert await store.publish(value(450, fence=3))
    assert await redis_client.get("fyrup:customer_count") == "450"
    assert await redis_client.get("fyrup:customer_count_updated") == "1770000000250"
    assert await redis_client.get("fyrup:customer_count_published_fence") == "3"
    for key in ("fyrup:customer_count", "fyrup:customer_count_updated"):
        assert await redis_client.ttl(key) == -1  # kept long after it goes stale


async def test_reads_a_value_written_by_the_original(redis_client: aioredis.Redis) -> None:
    updated_ms = int(time.time() * 1000) - 45_000
    await redis_client.set("fyrup:customer_count", 450)
    await redis_client.set("fyrup:customer_count_updated", updated_ms)
    store = RedisStore(redis_client, Keys("fyrup"))

    read = await store.read("customers")
    assert read is not None
    assert (read.value, read.fence, read.ttl) == (450, 0, 0)
    assert read.computed_at == pytest.approx(updated_ms / 1000)
    # The first refresh of the new service replaces it.
    assert await store.publish(value(451, fence=1))
    assert (await store.read("customers")) == value(451, fence=1)


async def test_publish_announces_the_metric_on_the_events_channel(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisStore(redis_client)
    async with redis_client.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(store.keys.events)
        assert await store.publish(value(450))
        assert not await store.publish(value(1, fence=0))  # refused: no announcement
        message = None
        async with asyncio.timeout(2):
            while message is None:
                message = await pubsub.get_message(timeout=1)
        assert message["channel"] == "simpro:events"
        assert message["data"] == "customers"
        assert await pubsub.get_message(timeout=0.1) is None


async def test_works_with_a_client_that_does_not_decode(redis_server: EmbeddedRedis) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        store = RedisStore(client)
        await store.publish(value(450))
        assert await store.read("customers") == value(450)
        assert await store.acquire_lock("customers", "t", 1000)
        assert await store.release_lock("customers", "t")
    finally:
        await client.aclose()


async def test_an_unreadable_value_is_a_store_error(redis_client: aioredis.Redis) -> None:
    await redis_client.set("simpro:customer_count", "four hundred")
    with pytest.raises(StoreError, match="unreadable"):
        await RedisStore(redis_client).read("customers")


async def test_raise_fence_only_raises(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    assert await store.raise_fence("customers", 7) == 7
    assert await store.raise_fence("customers", 3) == 7
    assert await store.next_fence("customers") == 8


async def test_ping_is_false_when_redis_is_gone(
    redis_server: EmbeddedRedis, redis_client: aioredis.Redis
) -> None:
    store = RedisStore(redis_client)
    assert await store.ping()
    redis_server.stop()
    assert not await store.ping()
