"""How the build misbehaves: rate limit, latency and injected faults."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from .config import FAULT_KINDS, LimiterShape


class RateLimit(Protocol):
    """The build's limit on Simpro API requests, shared by every client of the build."""

    rate: float

    def try_acquire(self) -> bool:
        """Whether a request arriving now may pass (False: answer 429)."""
        ...


class TokenBucket:
    """A token bucket: `rate` tokens, refilled at `rate` per second; a burst of `rate`.

    rate 0 = unlimited.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        # At least one whole token, or a rate below 1/s would never let anything through.
        self._capacity = max(rate, 1.0)
        self._clock = clock
        self._tokens = self._capacity
        self._stamp = clock()

    def try_acquire(self) -> bool:
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class SlidingWindow:
    """At most `rate` requests in any sliding one-second window; no burst beyond it.

    Counted on arrival, like a server's sliding-window log: a request passes when fewer
    than the limit passed in the second before it. Refused requests are not counted. Below
    1 req/s the window widens so that one request passes per 1/rate seconds. rate 0 =
    unlimited.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._limit = max(1, math.floor(rate))
        self._seconds = max(1.0, 1.0 / rate) if rate > 0 else 1.0
        self._clock = clock
        self._passed: deque[float] = deque()

    def try_acquire(self) -> bool:
        if self.rate <= 0:
            return True
        now = self._clock()
        while self._passed and self._passed[0] <= now - self._seconds:
            self._passed.popleft()
        if len(self._passed) >= self._limit:
            return False
        self._passed.append(now)
        return True


def rate_limit(
    shape: LimiterShape, rate: float, clock: Callable[[], float] = time.monotonic
) -> RateLimit:
    """The build's limiter of the given shape (see SimulatorConfig.limiter)."""
    if shape == "sliding":
        return SlidingWindow(rate, clock)
    return TokenBucket(rate, clock)


class LatencyModel:
    """Seconds to wait before each answer: `mean` with seeded +-10% jitter."""

    def __init__(self, mean: float, seed: int) -> None:
        self.mean = mean
        self._rng = random.Random(f"simpro-latency:{seed}")

    def next_delay(self) -> float:
        if self.mean <= 0:
            return 0.0
        return self.mean * self._rng.uniform(0.9, 1.1)


def check_kinds(kinds: Iterable[str | None]) -> None:
    unknown = [kind for kind in kinds if kind is not None and kind not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kinds: {unknown}; known: {list(FAULT_KINDS)}")


class FaultInjector:
    """Decides, per Simpro API request, whether and how it fails.

    `schedule` is consumed first, one entry per request (None = no fault), so tests
    can script exact sequences; after that a seeded draw against `rate` decides.
    """

    def __init__(self, rate: float, kinds: tuple[str, ...], seed: int) -> None:
        check_kinds(kinds)
        self.rate = rate
        self.kinds = kinds
        self.schedule: deque[str | None] = deque()
        self._rng = random.Random(f"simpro-faults:{seed}")

    def draw(self) -> str | None:
        if self.schedule:
            kind = self.schedule.popleft()
            check_kinds([kind])
            return kind
        if self.rate <= 0 or not self.kinds or self._rng.random() >= self.rate:
            return None
        return self._rng.choice(self.kinds)

    def pick_5xx(self) -> int:
        return self._rng.choice((500, 503))

    def as_json(self) -> dict[str, object]:
        return {"rate": self.rate, "kinds": list(self.kinds), "schedule": list(self.schedule)}
