"""The webhook queue on a real Redis: the stream format both sides share, taking and
acknowledging entries in the consumer group, and Redis failures as StoreError."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from simpro_counter.errors import StoreError
from simpro_counter.keys import WEBHOOK_GROUP, Keys
from simpro_counter.store import EmbeddedRedis, connect
from simpro_counter.webhooks.queue import (
    QueuedDelivery,
    WebhookQueue,
    decode_fields,
    enqueue,
    entry_fields,
)
from simpro_counter.webhooks.receiver import Delivery

CREATED = Delivery(
    event="invoice.created",
    resource="invoice",
    action="created",
    record_id=300555,
    company_id=0,
    triggered="2023-01-31T09:05:27+00:00",
)
JOB_DELETED = Delivery(
    event="job.deleted",
    resource="job",
    action="deleted",
    record_id=9,
    company_id=2,
    triggered="",
)
# An entry exactly as the receiver has always written it (and an older version may have
# left in the stream before an upgrade).
WRITTEN_BEFORE = {
    "event": "invoice.created",
    "resource": "invoice",
    "action": "created",
    "id": "300555",
    "company": "0",
    "triggered": "2023-01-31T09:05:27+00:00",
}
FOREVER_MS = 3_600_000  # a claim idle time no test reaches


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_url, timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys(f"queue-{uuid.uuid4().hex[:8]}")


def test_the_stream_entry_is_the_format_written_before_and_reads_back() -> None:
    assert entry_fields(CREATED) == WRITTEN_BEFORE
    assert decode_fields(WRITTEN_BEFORE) == CREATED
    assert decode_fields(entry_fields(JOB_DELETED)) == JOB_DELETED
    # Bytes, as a client that does not decode responses returns them, read the same.
    raw = {key.encode(): value.encode() for key, value in WRITTEN_BEFORE.items()}
    assert decode_fields(raw) == CREATED


async def test_enqueued_deliveries_are_taken_in_order_and_gone_once_acknowledged(
    client: aioredis.Redis, keys: Keys
) -> None:
    queue = WebhookQueue(client, keys, "one", claim_idle_ms=FOREVER_MS)
    await queue.ensure_group()
    await queue.ensure_group()  # the group exists already: not an error
    first = await enqueue(client, keys, CREATED)
    second = await enqueue(client, keys, JOB_DELETED)
    written = await client.xrange(keys.webhook_events) or []
    assert [fields for _, fields in written] == [
        WRITTEN_BEFORE,
        entry_fields(JOB_DELETED),
    ]
    taken = await queue.take(10, block_ms=100)
    assert taken == [QueuedDelivery(first, CREATED), QueuedDelivery(second, JOB_DELETED)]
    assert (await client.xpending(keys.webhook_events, WEBHOOK_GROUP))["pending"] == 2
    await queue.ack(first, second)
    assert (await client.xpending(keys.webhook_events, WEBHOOK_GROUP))["pending"] == 0
    assert await queue.take(10, block_ms=100) == []


async def test_a_new_entry_ends_a_blocked_take_at_once(client: aioredis.Redis, keys: Keys) -> None:
    queue = WebhookQueue(client, keys, "one", claim_idle_ms=FOREVER_MS)
    await queue.ensure_group()
    taking = asyncio.create_task(queue.take(10, block_ms=3000))
    await asyncio.sleep(0.1)
    await enqueue(client, keys, CREATED)
    taken = await asyncio.wait_for(taking, timeout=1.0)
    assert [queued.delivery for queued in taken] == [CREATED]


async def test_entries_another_consumer_left_pending_are_claimed_first(
    client: aioredis.Redis, keys: Keys
) -> None:
    stopped = WebhookQueue(client, keys, "stopped", claim_idle_ms=FOREVER_MS)
    await stopped.ensure_group()
    await enqueue(client, keys, CREATED)
    [left] = await stopped.take(10, block_ms=100)  # taken, never acknowledged
    await enqueue(client, keys, JOB_DELETED)
    other = WebhookQueue(client, keys, "other", claim_idle_ms=0)
    assert await other.take(10, block_ms=100) == [left]  # the idle one, before the new one
    await other.ack(left.entry_id)
    [new] = await other.take(10, block_ms=100)
    assert new.delivery == JOB_DELETED


async def test_an_entry_without_a_delivery_is_dropped_not_taken_forever(
    client: aioredis.Redis, keys: Keys
) -> None:
    queue = WebhookQueue(client, keys, "one", claim_idle_ms=0)
    await queue.ensure_group()
    await client.xadd(keys.webhook_events, {"event": "invoice.created", "id": "not a number"})
    first = await enqueue(client, keys, CREATED)
    assert await queue.take(10, block_ms=100) == [QueuedDelivery(first, CREATED)]
    await queue.ack(first)
    assert (await client.xpending(keys.webhook_events, WEBHOOK_GROUP))["pending"] == 0


async def test_redis_refusing_the_stream_is_a_store_error(
    client: aioredis.Redis, keys: Keys
) -> None:
    await client.set(keys.webhook_events, "not a stream")
    queue = WebhookQueue(client, keys, "one", claim_idle_ms=0)
    with pytest.raises(StoreError, match="WRONGTYPE"):
        await enqueue(client, keys, CREATED)
    with pytest.raises(StoreError, match="WRONGTYPE"):
        await queue.ensure_group()


async def test_redis_gone_is_a_store_error_for_every_operation(
    redis_server: EmbeddedRedis, keys: Keys
) -> None:
    client = connect(redis_server.url, timeout=1.0)
    try:
        queue = WebhookQueue(client, keys, "one", claim_idle_ms=0)
        await queue.ensure_group()
        entry_id = await enqueue(client, keys, CREATED)
        await asyncio.to_thread(redis_server.stop)
        with pytest.raises(StoreError, match="ConnectionError"):
            await enqueue(client, keys, CREATED)
        with pytest.raises(StoreError):
            await queue.ensure_group()
        with pytest.raises(StoreError):
            await queue.take(10, block_ms=100)
        with pytest.raises(StoreError):
            await queue.ack(entry_id)
    finally:
        await client.aclose()
