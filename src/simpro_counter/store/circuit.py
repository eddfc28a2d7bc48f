"""The circuit breaker in front of Redis: which errors mean "Redis is down", and the state.

Closed: operations go to Redis. Open: they go to memory at once, so a dead Redis costs
microseconds per request instead of a timeout, until a probe sees Redis answer again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis import exceptions as redis_errors

log = logging.getLogger("simpro_counter.store")

# Errors that say Redis cannot serve us right now (refused, reset, timed out, still
# loading its AOF, a replica after failover); anything else is a bug or bad data and is
# not hidden behind the fallback. OSError covers socket errors redis-py lets through.
REDIS_DOWN_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError and AuthenticationError
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    OSError,
)


def describe(exc: BaseException) -> str:
    """A short, password-free description of a Redis error for logs and health endpoints."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Backoff:
    """Delays that double from `initial` up to `maximum`."""

    initial: float = 0.2
    maximum: float = 5.0
    _next: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class Circuit:
    """Open/closed state with the last error; logs each transition once, in plain words."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.closed = True
        self.last_error: str | None = None
        self._opened_at = 0.0
        self._open = asyncio.Event()

    def trip(self, exc: BaseException) -> bool:
        """Open the circuit because of `exc`; True when it was closed until now."""
        self.last_error = describe(exc)
        if not self.closed:
            return False
        self.closed = False
        self._opened_at = time.monotonic()
        self._open.set()
        # redis-py names the address in most messages; add it where it does not.
        detail = self.last_error
        if self.location not in detail:
            detail = f"{detail}, at {self.location}"
        log.warning("Redis unreachable (%s): serving from memory", detail)
        return True

    def note(self, exc: BaseException) -> None:
        """Record a failed probe without logging it again."""
        self.last_error = describe(exc)

    def close(self) -> None:
        """Redis answers again: send operations back to it."""
        if self.closed:
            return
        self.closed = True
        self._open.clear()
        log.warning(
            "Redis is back (%s, after %.1f s): serving from Redis",
            self.location,
            time.monotonic() - self._opened_at,
        )

    async def wait_open(self) -> None:
        await self._open.wait()
