"""The `Store` protocol against a real Redis, with the original deployment's key names.

Redis errors (connection refused, timeouts, ...) propagate unchanged: deciding what a
failure means (fall back to memory, retry later) is `ResilientStore`'s job.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from simpro_counter.errors import StoreError
from simpro_counter.keys import HISTORY_LENGTH, Keys
from simpro_counter.store.base import StorageName
from simpro_counter.store.values import MetricValue, RefreshStatus

# KEYS: value, updated, meta, published_fence, published_ledger_version. ARGV: value,
# updated (epoch ms), meta, fence, events channel, metric, ledger version (-1: none). One
# script so the order check and the writes are atomic: a slower refresh holding an older
# fence can never overwrite a newer value, nor counts read from the ledger at an older
# version those read later under the same fence.
_PUBLISH = """
local stored = tonumber(redis.call('GET', KEYS[4]))
local fence = tonumber(ARGV[4])
if stored and stored > fence then
    return 0
end
local version = tonumber(ARGV[7])
if stored == fence then
    local stored_version = tonumber(redis.call('GET', KEYS[5])) or -1
    if stored_version > version then
        return 0
    end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SET', KEYS[4], ARGV[4])
redis.call('SET', KEYS[5], ARGV[7])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""

# Compare-and-pexpire: only the holder of the token may extend the lock.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Compare-and-delete: a holder whose lock expired must not delete its successor's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Raise the fence counter to at least ARGV[1] (after fences were handed out from memory).
_RAISE_FENCE = """
local current = tonumber(redis.call('GET', KEYS[1])) or 0
if current < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], ARGV[1])
    return tonumber(ARGV[1])
end
return current
"""


class RedisStore:
    """`Store` on a `redis.asyncio.Redis` client (decoded or not, both work)."""

    def __init__(self, client: aioredis.Redis, keys: Keys | None = None) -> None:
        self.client = client
        self.keys = keys or Keys()
        self._publish = client.register_script(_PUBLISH)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self._raise_fence = client.register_script(_RAISE_FENCE)

    @property
    def storage(self) -> StorageName:
        return "redis"

    async def read(self, metric: str) -> MetricValue | None:
        """The value, or None; reads values written by the original (no meta key) too."""
        k = self.keys.metric(metric)
        value, updated, meta = await self.client.mget([k.value, k.updated, k.meta])
        if value is None:
            return None
        try:
            return MetricValue.from_parts(metric, value, updated, meta)
        except (ValueError, TypeError) as exc:
            raise StoreError(
                f"The stored value of {metric!r} ({k.value}) is unreadable: {exc}"
            ) from exc

    async def publish(self, value: MetricValue) -> bool:
        """Store `value` unless a higher (fence, ledger version) is stored, then announce it
        on the events channel."""
        k = self.keys.metric(value.metric)
        stored = await self._publish(
            keys=[k.value, k.updated, k.meta, k.published_fence, k.published_ledger_version],
            args=[
                str(value.value),
                str(round(value.computed_at * 1000)),
                value.meta_json(),
                str(value.fence),
                self.keys.events,
                value.metric,
                str(value.ledger_version),
            ],
        )
        return bool(stored)

    async def next_fence(self, metric: str) -> int:
        return int(await self.client.incr(self.keys.metric(metric).fence))

    async def raise_fence(self, metric: str, at_least: int) -> int:
        """Make the next fence higher than `at_least`; returns the counter's value."""
        return int(await self._raise_fence(keys=[self.keys.metric(metric).fence], args=[at_least]))

    async def acquire_lock(self, metric: str, token: str, ttl_ms: int) -> bool:
        return bool(await self.client.set(self.keys.metric(metric).lock, token, nx=True, px=ttl_ms))

    async def extend_lock(self, metric: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock if `token` still holds it; False when it was lost."""
        return bool(await self._extend(keys=[self.keys.metric(metric).lock], args=[token, ttl_ms]))

    async def release_lock(self, metric: str, token: str) -> bool:
        """Delete the lock only if `token` holds it (compare-and-delete)."""
        return bool(await self._release(keys=[self.keys.metric(metric).lock], args=[token]))

    async def lock_held(self, metric: str) -> bool:
        return bool(await self.client.exists(self.keys.metric(metric).lock))

    async def read_status(self, metric: str) -> RefreshStatus | None:
        text = await self.client.get(self.keys.metric(metric).status)
        return RefreshStatus.from_json(text) if text is not None else None

    async def write_status(self, status: RefreshStatus) -> None:
        await self.client.set(self.keys.metric(status.metric).status, status.to_json())

    async def push_history(self, entry: dict[str, Any]) -> None:
        """Remember one finished refresh; the last `HISTORY_LENGTH` are kept."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.lpush(self.keys.history, json.dumps(entry, separators=(",", ":")))
            pipe.ltrim(self.keys.history, 0, HISTORY_LENGTH - 1)
            await pipe.execute()

    async def history(self) -> list[dict[str, Any]]:
        """Recent refreshes, newest first."""
        return [json.loads(item) for item in await self.client.lrange(self.keys.history, 0, -1)]

    async def ping(self) -> bool:
        """True when Redis answers, False when it cannot be reached."""
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False
