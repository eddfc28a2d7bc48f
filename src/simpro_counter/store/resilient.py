"""The store the web service uses: Redis when it answers, memory when it does not.

- Reads are served from an in-process near-cache that pub/sub keeps current, so the hot
  path does not round-trip to Redis; every replica sees a new value within milliseconds.
- A Redis error opens a circuit breaker: from then on every operation goes straight to
  an in-memory mirror (microseconds, not timeouts) until a background probe sees Redis
  answer again, writes back what was published meanwhile, and closes the circuit.
- Every value read from or published to Redis is mirrored in memory, so the last good
  value keeps being served while Redis is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from simpro_counter.errors import StoreError
from simpro_counter.keys import Keys
from simpro_counter.store.base import StorageName
from simpro_counter.store.circuit import REDIS_DOWN_ERRORS, Backoff, Circuit, describe
from simpro_counter.store.connection import describe_location
from simpro_counter.store.memory import MemoryStore, newer
from simpro_counter.store.nearcache import NearCache
from simpro_counter.store.redis_store import RedisStore
from simpro_counter.store.subscriber import EventSubscriber
from simpro_counter.store.tasks import stop_task
from simpro_counter.store.values import MetricValue, RefreshStatus

log = logging.getLogger("simpro_counter.store")

T = TypeVar("T")


class ResilientStore:
    """`Store` over Redis with a circuit breaker, an in-memory mirror and a near-cache.

    Give it a client with short timeouts and no retries (`connect(url)` builds one:
    `socket_timeout=0.25, socket_connect_timeout=0.25`), so a hung Redis costs at most one
    timeout before the circuit opens. Call `start()` (or use `async with`) to run the
    events subscription and the recovery probe; without them reads go through to Redis
    and an open circuit never closes. The client stays the caller's to close.

    While Redis is down, locks and fences come from the memory store: they coordinate
    this process only, so each replica may refresh on its own. Fences handed out then
    stay above every fence this process saw from Redis, and the Redis fence counter is
    raised past them when Redis is back, so the newest value wins either way (by fence,
    then `computed_at`). A lock taken on one side of an outage is carried over to the
    other side by `extend_lock`, if nobody else took it there, so a running refresh is not
    abandoned because Redis went away or came back.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        mirror: MemoryStore | None = None,
        probe_initial: float = 0.2,
        probe_max: float = 5.0,
        unsubscribed_ttl: float = 1.0,
        heartbeat: float = 1.0,
    ) -> None:
        self.keys = keys or Keys()
        self.redis = RedisStore(client, self.keys)
        self.mirror = mirror or MemoryStore()
        self._client = client
        self._circuit = Circuit(self.redis_location)
        self._near = NearCache(unsubscribed_ttl=unsubscribed_ttl)
        self._probe_backoff = Backoff(probe_initial, probe_max)
        self._subscriber = EventSubscriber(
            client,
            self.keys.events,
            on_event=self._on_event,
            on_up=self._near.subscription_up,
            # A lost subscription only stops trusting the near-cache; whether Redis is down
            # is for the next read-through to find out, within `unsubscribed_ttl`.
            on_down=lambda _exc: self._near.subscription_down(),
            backoff=Backoff(probe_initial, probe_max),
            heartbeat=heartbeat,
        )
        self._probe: asyncio.Task[None] | None = None
        # What was written to memory while the circuit was open, to write back to Redis.
        self._pending_values: dict[str, MetricValue] = {}
        self._pending_status: dict[str, RefreshStatus] = {}
        self._pending_history: list[dict[str, Any]] = []
        self._memory_fences: set[str] = set()
        # metric -> (token, storage it was taken on), to carry locks across an outage.
        self._tokens: dict[str, tuple[str, StorageName]] = {}

    # -- state for health endpoints --------------------------------------------------

    @property
    def redis_location(self) -> str:
        """Where Redis is and its topology (never a password), for health and logs."""
        return describe_location(self._client)

    @property
    def storage(self) -> StorageName:
        """`redis` while the circuit is closed, `memory` while it is open."""
        return "redis" if self._circuit.closed else "memory"

    @property
    def redis_healthy(self) -> bool:
        return self._circuit.closed

    @property
    def last_redis_error(self) -> str | None:
        """The last Redis failure seen (kept after recovery, for status pages)."""
        return self._circuit.last_error

    @property
    def subscribed(self) -> bool:
        """Whether the events subscription is up (the near-cache is then fully trusted)."""
        return self._subscriber.connected

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Check Redis once, then run the events subscription and the recovery probe."""
        if self._probe is not None:
            return
        await self.ping()
        self._subscriber.start()
        self._probe = asyncio.create_task(self._probe_loop(), name="redis probe")

    async def aclose(self) -> None:
        """Stop the background tasks (the Redis client is left to its owner)."""
        probe, self._probe = self._probe, None
        if probe is not None:
            await stop_task(probe)
        await self._subscriber.aclose()
        self._near.subscription_down()

    async def __aenter__(self) -> ResilientStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- values ----------------------------------------------------------------------

    async def read(self, metric: str) -> MetricValue | None:
        """The value from the near-cache, else Redis, else (circuit open) memory."""
        if self._circuit.closed:
            hit, cached = self._near.get(metric)
            if hit:
                return cached
            try:
                return await self._read_through(metric)
            except REDIS_DOWN_ERRORS as exc:
                self._trip(exc)
        return await self.mirror.read(metric)

    async def publish(self, value: MetricValue) -> bool:
        """Publish to Redis (and mirror it), or to memory while Redis is down."""
        if self._circuit.closed:
            try:
                stored = await self._redis_call(self.redis.publish(value))
            except REDIS_DOWN_ERRORS as exc:
                self._trip(exc)
            else:
                if stored:
                    self._near.set(value)
                    self.mirror.remember(value)
                return stored
        stored = await self.mirror.publish(value)
        if stored:
            self._pending_values[value.metric] = value
        return stored

    # -- fences and locks ------------------------------------------------------------

    async def next_fence(self, metric: str) -> int:
        """A fence from Redis's INCR, or from memory (above all fences seen) while down."""
        if self._circuit.closed:
            try:
                fence = await self._redis_call(self.redis.next_fence(metric))
            except REDIS_DOWN_ERRORS as exc:
                self._trip(exc)
            else:
                self.mirror.observe_fence(metric, fence)
                return fence
        self._memory_fences.add(metric)
        return await self.mirror.next_fence(metric)

    async def acquire_lock(self, metric: str, token: str, ttl_ms: int) -> bool:
        """Take the lock in Redis, or in memory (this process only) while Redis is down."""
        acquired = await self._either(
            lambda: self.redis.acquire_lock(metric, token, ttl_ms),
            lambda: self.mirror.acquire_lock(metric, token, ttl_ms),
        )
        if acquired:
            # Read after the call: a failing Redis call falls back to memory within it.
            self._tokens[metric] = (token, self.storage)
        return acquired

    async def extend_lock(self, metric: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock if `token` still holds it; False when it was lost."""
        extended = await self._either(
            lambda: self.redis.extend_lock(metric, token, ttl_ms),
            lambda: self.mirror.extend_lock(metric, token, ttl_ms),
        )
        held = self._tokens.get(metric)
        if extended or held is None or held != (token, _other(self.storage)):
            return extended
        # Taken on the other side of an outage: the lock does not exist here yet.
        return await self.acquire_lock(metric, token, ttl_ms)

    async def release_lock(self, metric: str, token: str) -> bool:
        """Delete the lock only if `token` holds it (compare-and-delete)."""
        released = await self._either(
            lambda: self.redis.release_lock(metric, token),
            lambda: self.mirror.release_lock(metric, token),
        )
        # A lock carried into memory during an outage must not outlive its holder here;
        # one left in Redis during an outage expires by its TTL.
        released = await self.mirror.release_lock(metric, token) or released
        held = self._tokens.get(metric)
        if held is not None and held[0] == token:
            del self._tokens[metric]
        return released

    async def lock_held(self, metric: str) -> bool:
        held = await self._either(
            lambda: self.redis.lock_held(metric), lambda: self.mirror.lock_held(metric)
        )
        return held or await self.mirror.lock_held(metric)

    # -- status and history ----------------------------------------------------------

    async def read_status(self, metric: str) -> RefreshStatus | None:
        return await self._either(
            lambda: self.redis.read_status(metric), lambda: self.mirror.read_status(metric)
        )

    async def write_status(self, status: RefreshStatus) -> None:
        await self.mirror.write_status(status)
        if self._circuit.closed:
            try:
                await self._redis_call(self.redis.write_status(status))
            except REDIS_DOWN_ERRORS as exc:
                self._trip(exc)
            else:
                return
        self._pending_status[status.metric] = status

    async def push_history(self, entry: dict[str, Any]) -> None:
        """Remember one finished refresh; the last `HISTORY_LENGTH` are kept."""
        await self.mirror.push_history(entry)
        if self._circuit.closed:
            try:
                await self._redis_call(self.redis.push_history(entry))
            except REDIS_DOWN_ERRORS as exc:
                self._trip(exc)
            else:
                return
        self._pending_history.append(dict(entry))

    async def history(self) -> list[dict[str, Any]]:
        return await self._either(self.redis.history, self.mirror.history)

    async def ping(self) -> bool:
        """True when Redis answers now (a failure opens the circuit)."""
        try:
            return bool(await self.redis.client.ping())
        except REDIS_DOWN_ERRORS as exc:
            self._trip(exc)
            return False

    # -- internals -------------------------------------------------------------------

    async def _either(
        self, on_redis: Callable[[], Awaitable[T]], on_memory: Callable[[], Awaitable[T]]
    ) -> T:
        """`on_redis()` while the circuit is closed and Redis answers, else `on_memory()`."""
        if self._circuit.closed:
            try:
                return await self._redis_call(on_redis())
            except REDIS_DOWN_ERRORS as exc:
                self._trip(exc)
        return await on_memory()

    @staticmethod
    async def _redis_call(call: Awaitable[T]) -> T:
        """Await a Redis operation; Redis refusing it (not being down) is a StoreError."""
        try:
            return await call
        except REDIS_DOWN_ERRORS:
            raise
        except RedisError as exc:
            raise StoreError(f"Redis refused the operation: {describe(exc)}") from exc

    async def _read_through(self, metric: str) -> MetricValue | None:
        ticket = self._near.ticket(metric)
        value = await self._redis_call(self.redis.read(metric))
        kept = await self.mirror.read(metric)
        if value is not None and kept is not None and kept.order() > value.order():
            value = await self._restore(kept, value)
        self._near.put(metric, value, ticket)
        if value is not None:
            self.mirror.remember(value)
        return value

    async def _restore(self, kept: MetricValue, found: MetricValue) -> MetricValue | None:
        """Redis holds an older value than one it held before (by fence and ledger version,
        which only ever grow there): it lost writes, e.g. restarted from an AOF whose tail
        a crash cut short. Serving what it holds would take the count back, so write the
        newer one back instead, with the fence counter past every fence seen here (a new
        refresh must still get the highest fence); the value Redis holds after that."""
        log.warning(
            "Redis holds %s = %d (fence %d), older than the %d (fence %d) it held before: "
            "it lost writes; writing the newer one back",
            kept.metric,
            found.value,
            found.fence,
            kept.value,
            kept.fence,
        )
        await self._redis_call(
            self.redis.raise_fence(kept.metric, self.mirror.fence_counter(kept.metric))
        )
        if await self._redis_call(self.redis.publish(kept)):
            return kept
        # Refused: a newer value arrived meanwhile, which is then the one to serve.
        return await self._redis_call(self.redis.read(kept.metric))

    def _trip(self, exc: BaseException) -> None:
        if self._circuit.trip(exc):
            # While open, reads go to memory; entries from before may be outdated after.
            self._near.clear()

    async def _on_event(self, metric: str) -> None:
        """A value of `metric` was published (maybe by another replica): re-read it."""
        self._near.invalidate(metric)
        if not self._circuit.closed:
            return
        try:
            await self._read_through(metric)
        except REDIS_DOWN_ERRORS as exc:
            self._trip(exc)
        except StoreError as exc:
            log.warning("Could not re-read %s after its update: %s", metric, exc)

    async def _probe_loop(self) -> None:
        while True:
            await self._circuit.wait_open()
            self._probe_backoff.reset()
            while not self._circuit.closed:
                await asyncio.sleep(self._probe_backoff.next())
                try:
                    await self.redis.client.ping()
                    await self._write_back()
                except REDIS_DOWN_ERRORS as exc:
                    self._circuit.note(exc)
                    continue
                except (RedisError, StoreError) as exc:
                    log.error("Redis answers but refused the write-back: %s", describe(exc))
                    self._circuit.note(exc)
                    continue
                # No await since `_write_back` found nothing pending: nothing can have
                # been written to memory only in between.
                self._circuit.close()
                self._near.clear()
                self._subscriber.wake()

    async def _write_back(self) -> None:
        """Bring Redis up to date with what was written to memory while it was away.

        Returns only once nothing is pending; each item leaves the pending set only if it
        was not replaced while being written, since memory keeps taking writes meanwhile.
        """
        while self._has_pending():
            for metric in list(self._memory_fences):
                counter = self.mirror.fence_counter(metric)
                await self.redis.raise_fence(metric, counter)
                if self.mirror.fence_counter(metric) == counter:
                    self._memory_fences.discard(metric)
            for metric, value in list(self._pending_values.items()):
                await self._write_back_value(value)
                if self._pending_values.get(metric) is value:
                    del self._pending_values[metric]
            for metric, status in list(self._pending_status.items()):
                await self._redis_call(self.redis.write_status(status))
                if self._pending_status.get(metric) is status:
                    del self._pending_status[metric]
            while self._pending_history:
                await self._redis_call(self.redis.push_history(self._pending_history[0]))
                self._pending_history.pop(0)

    def _has_pending(self) -> bool:
        return bool(
            self._memory_fences
            or self._pending_values
            or self._pending_status
            or self._pending_history
        )

    async def _write_back_value(self, value: MetricValue) -> None:
        current = await self._redis_call(self.redis.read(value.metric))
        if not newer(value, current):
            log.info(
                "Kept the newer %s in Redis over the one published while it was away",
                value.metric,
            )
            return
        written = await self._redis_call(self.redis.publish(value))
        log.info(
            "Wrote %s = %d (fence %d), published while Redis was away, to Redis%s",
            value.metric,
            value.value,
            value.fence,
            "" if written else " (refused: a newer one arrived meanwhile)",
        )


def _other(storage: StorageName) -> StorageName:
    return "memory" if storage == "redis" else "redis"
