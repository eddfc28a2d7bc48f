"""The client's rate limiter: never more than the limit in any one-second window.

Simpro allows 10 requests per second per build and does not say how it measures that
(token bucket, fixed or sliding window). A schedule that each of them accepts (a bucket
of at least N tokens refilled at N/s, N per fixed or sliding second) is a strict sliding
window: at most N request starts in any window of a second, and no allowance on top.
So the limiter keeps a log of the last starts and gives a request the earliest start
that keeps every window within N (see :func:`earliest_start`).

- **Counted at send time**, with a `margin` added to the window: a server counts
  arrivals, which are our starts shifted by network and server delays, and two requests
  a window apart may be shifted by different amounts. The margin absorbs that
  difference and costs as much: 50 ms per window is 5 % of the throughput.
  A start is counted when the waiting request actually resumes, not when it was due: a
  busy event loop wakes waiters late, and a start counted early would let the request
  one window later go out too soon.
- **Adaptive** (:class:`AdaptiveRate`): a 429 means someone else shares the build's
  quota (or the ceiling is set too high), so the rate is halved (down to 1 req/s), every
  request waits out a `Retry-After`, and after a run of answers that were not 429 the rate
  climbs back by a tenth of the ceiling at a time. `SIMPRO_RATE_LIMIT` is the ceiling.

Written here rather than taken from a library: aiolimiter (a leaky bucket) allows a burst
on top of the rate; asyncio-throttle polls every few milliseconds and cannot take a fake
clock; pyrate-limiter's sliding-window log is exact but its rates are fixed when the
limiter is built. None can slow down on a 429 in flight, which is the point here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

# Seconds added to each window: the difference in delay, network and server, between two
# requests a window apart that we tolerate without a 429. Loaded servers (and this
# project's simulator on a busy machine) stamp arrivals tens of milliseconds late; see
# docs/performance.md, where bench/refresh.py measures the cost and the 429s with and
# without it.
DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class Window:
    """At most `limit` request starts in any `seconds`-long window."""

    limit: int
    seconds: float

    @classmethod
    def for_rate(cls, rate: float, margin: float = 0.0) -> Window:
        """The strictest window for `rate` requests/second.

        At 1 req/s or more: floor(rate) starts per second (a fractional part is not spent:
        10.5 req/s would allow 11 in some second). Below: one start per 1/rate seconds.
        """
        if rate <= 0:
            raise ValueError("rate must be > 0")
        if rate >= 1:
            return cls(math.floor(rate), 1.0 + margin)
        return cls(1, 1.0 / rate + margin)


def earliest_start(starts: Sequence[float], now: float, window: Window) -> float:
    """The earliest start at or after `now`, and after every start in `starts` (sorted),
    such that no `window.seconds`-long window holds more than `window.limit` starts.

    A start `t` shares a window with an earlier start `s` when `t - s < window.seconds`.
    Starts are appended in order, so it is enough that the `limit`-th latest start lies a
    whole window before `t`.
    """
    start = max(now, starts[-1]) if starts else now
    if len(starts) >= window.limit:
        start = max(start, starts[-window.limit] + window.seconds)
    return start


class AdaptiveRate:
    """The rate to send at: the ceiling, halved on each 429, recovering in steps.

    A 429 to a request that was sent before the last slow-down says nothing new (it was
    sent at the old rate), so it does not halve again; likewise only answers to requests
    sent since the last slow-down count towards recovery.
    """

    def __init__(self, ceiling: float, *, floor: float = 1.0) -> None:
        if ceiling <= 0:
            raise ValueError("ceiling must be > 0")
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.step = max(1.0, ceiling / 10)
        self.current = ceiling
        self.slowdowns = 0
        """How many times the rate went down; a request carries the count it was sent at."""
        self._successes = 0

    @property
    def successes_to_recover(self) -> int:
        """Answers in a row before the rate climbs one step: a second's worth."""
        return max(1, math.ceil(self.current))

    def rate_limited(self, sent_at_slowdowns: int) -> bool:
        """A 429 to a request sent after `sent_at_slowdowns` slow-downs; True if it slowed."""
        self._successes = 0
        if sent_at_slowdowns != self.slowdowns or self.current <= self.floor:
            return False
        self.current = max(self.floor, self.current / 2)
        self.slowdowns += 1
        return True

    def succeeded(self, sent_at_slowdowns: int) -> bool:
        """An answer that was not a 429; True when the rate went up."""
        if sent_at_slowdowns != self.slowdowns or self.current >= self.ceiling:
            return False
        self._successes += 1
        if self._successes < self.successes_to_recover:
            return False
        self.current = min(self.ceiling, self.current + self.step)
        self._successes = 0
        return True


@dataclass(frozen=True)
class Permit:
    """A granted start: when it was, and how many slow-downs had happened by then."""

    started_at: float
    slowdowns: int


class RateLimiter:
    """Async limiter for one Simpro build: `await acquire()` before sending each request.

    A waiter sleeps until the earliest start the log allows, then checks again and takes
    it if it is still free: waiters woken together take the free starts one by one and
    sleep again for the next. What goes into the log is the moment the waiter actually
    resumed (see the module docstring), and nothing is reserved ahead, so a slow-down or
    a `Retry-After` applies to every waiter at its next check.
    `clock` and `sleep` can be replaced by a fake pair in tests.
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.adaptive = AdaptiveRate(rate)
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._paused_until = 0.0

    @property
    def rate(self) -> float:
        """Requests/second sent at now (the ceiling unless a 429 slowed it down)."""
        return self.adaptive.current

    @property
    def window(self) -> Window:
        return Window.for_rate(self.adaptive.current, self.margin)

    async def acquire(self) -> Permit:
        """Wait for a start that keeps every window within the limit; then it is counted."""
        while True:
            now = self._clock()
            window = self.window
            # Starts a whole window old no longer constrain anything.
            while self._starts and self._starts[0] <= now - window.seconds:
                self._starts.popleft()
            start = max(earliest_start(self._starts, now, window), self._paused_until)
            if start <= now:
                self._starts.append(now)
                return Permit(now, self.adaptive.slowdowns)
            await self._sleep(start - now)

    def rate_limited(self, permit: Permit, retry_after: float | None = None) -> None:
        """The request of `permit` was answered 429: slow down and wait out `Retry-After`."""
        self.adaptive.rate_limited(permit.slowdowns)
        if retry_after is not None:
            self._paused_until = max(self._paused_until, self._clock() + retry_after)

    def succeeded(self, permit: Permit) -> None:
        """The request of `permit` was answered, and not with a 429."""
        self.adaptive.succeeded(permit.slowdowns)
