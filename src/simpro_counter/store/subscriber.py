"""A background task listening to the events channel, reconnecting by itself.

It reports each published metric and whether the subscription is up. "Up" means Redis
confirmed the subscription and has answered within the last few heartbeats: a connection
that went silent (a network partition rather than a closed socket) counts as down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from simpro_counter.store.circuit import Backoff, describe
from simpro_counter.store.tasks import stop_task

log = logging.getLogger("simpro_counter.store")

# Missing this many heartbeats in a row means the connection is dead.
_MISSED_HEARTBEATS = 3


class SilentSubscriptionError(TimeoutError):
    """Redis stopped answering on the subscription's connection."""


class EventSubscriber:
    """Calls `on_event(metric)` for each message on `channel`; `on_up`/`on_down` on changes."""

    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        *,
        on_event: Callable[[str], Awaitable[None]],
        on_up: Callable[[], None],
        on_down: Callable[[BaseException], None],
        backoff: Backoff,
        heartbeat: float = 1.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_event = on_event
        self._on_up = on_up
        self._on_down = on_down
        self._backoff = backoff
        self._heartbeat = heartbeat
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"subscriber {self._channel}")

    def wake(self) -> None:
        """Retry now instead of at the end of the current backoff delay."""
        self._wake.set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task)
        self.connected = False

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                self._down(exc)
            except Exception as exc:
                # A bug must not end the task silently: readers would lose invalidation.
                log.exception("The Redis events subscription failed")
                self._down(exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._backoff.next())

    def _down(self, exc: BaseException) -> None:
        if self.connected:
            self.connected = False
            log.info("Lost the Redis events subscription (%s)", describe(exc))
            self._on_down(exc)

    async def _listen(self) -> None:
        pubsub = self._client.pubsub()
        loop = asyncio.get_running_loop()
        try:
            await pubsub.subscribe(self._channel)
            last_heard = last_ping = loop.time()
            while True:
                message: dict[str, Any] | None = await pubsub.get_message(
                    timeout=self._heartbeat / 2
                )
                now = loop.time()
                if message is not None:
                    last_heard = now
                    await self._handle(message)
                elif now - last_heard > self._heartbeat * _MISSED_HEARTBEATS:
                    raise SilentSubscriptionError("no answer on the events subscription")
                if now - last_ping >= self._heartbeat:
                    # The pong counts as hearing from Redis; see the silence check above.
                    await pubsub.ping()
                    last_ping = now
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            self.connected = True
            self._backoff.reset()
            log.info("Listening for published values on %s", self._channel)
            self._on_up()
        elif kind == "message":
            data = message["data"]
            await self._on_event(data.decode() if isinstance(data, bytes) else str(data))
