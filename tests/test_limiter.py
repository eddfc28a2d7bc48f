"""The client's rate limiter: never more than the limit in any one-second window, no
burst, slowing down on a 429 and recovering; driven by virtual time (no real sleeping)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpro_counter.simpro.limiter import (
    AdaptiveRate,
    Permit,
    RateLimiter,
    Window,
    earliest_start,
)


class VirtualTime:
    """A clock and a sleep for the limiter; time jumps to the next sleeper's wake-up once
    every task is asleep, so a test of minutes runs in milliseconds, deterministically."""

    def __init__(self, lateness: float = 0.0) -> None:
        self.lateness = lateness  # how late every sleeper wakes: a busy event loop
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        wake_at = self.now + max(delay, 0.0) + self.lateness
        heapq.heappush(self._sleepers, (wake_at, next(self._order), future))
        await future

    def limiter(self, rate: float, margin: float = 0.0) -> RateLimiter:
        return RateLimiter(rate, margin=margin, clock=self.clock, sleep=self.sleep)

    async def run(self, *work: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.create_task(job) for job in work]
        while True:
            # Let every task run until it sleeps or ends (each step is one loop turn).
            for _ in range(1000):
                awake = sum(not task.done() for task in tasks) - len(self._sleepers)
                if awake == 0:
                    break
                await asyncio.sleep(0)
            for task in tasks:
                if task.done():
                    task.result()  # re-raise a failed assertion inside a task
            if all(task.done() for task in tasks):
                return
            wake_at, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake_at)
            future.set_result(None)


def allowed_per_second(rate: float) -> int:
    """What "`rate` requests per second" allows in any one-second window."""
    return max(1, math.floor(rate))


def busiest_second(starts: Sequence[float]) -> int:
    """The most starts in any half-open window [t, t + 1 s)."""
    ordered = sorted(starts)
    # A busiest window can always be moved to begin at a start.
    return max(
        (sum(1 for s in ordered[i:] if s < begin + 1.0) for i, begin in enumerate(ordered)),
        default=0,
    )


def assert_within_limit(starts: Sequence[float], rate: float) -> None:
    assert busiest_second(starts) <= allowed_per_second(rate)
    if rate < 1:  # one start per 1/rate seconds
        ordered = sorted(starts)
        assert all(b - a >= 1 / rate - 1e-9 for a, b in itertools.pairwise(ordered))


# -- the schedule ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.2, max_value=40.0),
    margin=st.sampled_from([0.0, 0.05]),
    wanted=st.lists(st.floats(min_value=0.0, max_value=20.0), max_size=120),
)
def test_earliest_start_never_puts_more_than_the_limit_in_a_second(
    rate: float, margin: float, wanted: list[float]
) -> None:
    window = Window.for_rate(rate, margin)
    starts: list[float] = []
    for want in sorted(wanted):
        start = earliest_start(starts, want, window)
        assert start >= want
        # No idling: it waits only for the previous start, or for the start `limit` back
        # to leave the window.
        constraints = [want, *starts[-1:]]
        if len(starts) >= window.limit:
            constraints.append(starts[-window.limit] + window.seconds)
        assert start == max(constraints)
        starts.append(start)
    assert_within_limit(starts, rate)


def test_back_to_back_requests_get_the_limit_per_window_and_no_burst() -> None:
    time = VirtualTime()
    limiter = time.limiter(10, margin=0.05)
    starts: list[float] = []

    async def one_after_another() -> None:
        for _ in range(35):
            starts.append((await limiter.acquire()).started_at)

    asyncio.run(time.run(one_after_another()))
    # Ten at once, then ten more a window (1.05 s) later, and so on: never an eleventh.
    assert starts == [pytest.approx(k // 10 * 1.05, abs=1e-9) for k in range(35)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.floats(min_value=0.5, max_value=30.0),
    clients=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=3.0),  # when the client starts
            st.lists(st.floats(min_value=0.0, max_value=0.8), min_size=1, max_size=12),
        ),
        min_size=1,
        max_size=10,
    ),
    limited=st.sets(st.integers(min_value=0, max_value=60), max_size=4),
    retry_after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=2.0)),
    lateness=st.sampled_from([0.0, 0.003, 0.04]),
)
def test_concurrent_requests_with_429s_never_exceed_the_limit(
    rate: float,
    clients: list[tuple[float, list[float]]],
    limited: set[int],
    retry_after: float | None,
    lateness: float,
) -> None:
    """Concurrent workers, each request taking its own time, some answered 429, on an
    event loop that may wake sleepers late."""
    time = VirtualTime(lateness)
    limiter = time.limiter(rate, margin=0.0)
    starts: list[float] = []
    number = itertools.count()

    async def client(begin: float, durations: list[float]) -> None:
        await time.sleep(begin)
        for duration in durations:
            permit = await limiter.acquire()
            assert permit.started_at == time.now  # counted when it really starts
            starts.append(permit.started_at)
            await time.sleep(duration)
            if next(number) in limited:
                limiter.rate_limited(permit, retry_after)
            else:
                limiter.succeeded(permit)

    asyncio.run(time.run(*(client(begin, durations) for begin, durations in clients)))
    assert len(starts) == sum(len(durations) for _, durations in clients)
    assert_within_limit(starts, rate)


# -- adaptive --------------------------------------------------------------------------


def test_a_429_halves_the_rate_once_per_slowdown_down_to_one_per_second() -> None:
    rate = AdaptiveRate(10)
    assert rate.rate_limited(rate.slowdowns)
    assert rate.current == 5
    assert not rate.rate_limited(0)  # sent before the slow-down: already answered by it
    assert rate.current == 5
    while rate.rate_limited(rate.slowdowns):
        pass
    assert rate.current == 1.0  # the floor
    assert AdaptiveRate(0.5).floor == 0.5  # a ceiling below 1 req/s is its own floor


def test_after_a_slowdown_the_rate_recovers_step_by_step_to_the_ceiling() -> None:
    rate = AdaptiveRate(10)
    rate.rate_limited(0)
    rate.rate_limited(1)
    assert rate.current == 2.5
    assert not rate.succeeded(0)  # an answer to a request sent before the slow-downs
    steps = [rate.current]
    answers = 0
    while rate.current < rate.ceiling:
        answers += 1
        if rate.succeeded(rate.slowdowns):
            steps.append(rate.current)
        assert answers < 100
    # One step (a tenth of the ceiling) after each second's worth of answers.
    assert steps == [2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10]
    assert answers == 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10
    assert not rate.succeeded(rate.slowdowns)  # never above the ceiling
    assert rate.current == 10


def test_a_429_without_retry_after_slows_every_later_request() -> None:
    time = VirtualTime()
    limiter = time.limiter(10)
    starts: list[float] = []

    async def scan() -> None:
        first: Permit | None = None
        for _ in range(10):
            permit = await limiter.acquire()
            first = first or permit
            starts.append(permit.started_at)
        assert first is not None
        limiter.rate_limited(first)
        for _ in range(10):
            starts.append((await limiter.acquire()).started_at)

    asyncio.run(time.run(scan()))
    assert limiter.rate == 5
    # Ten at t=0; then five per second: t=1 and t=2 (not ten at t=1).
    assert starts[10:] == [1.0] * 5 + [2.0] * 5


def test_retry_after_pauses_every_request_until_it_has_passed() -> None:
    time = VirtualTime()
    limiter = time.limiter(10)
    starts: list[float] = []

    async def worker(delay: float) -> None:
        await time.sleep(delay)
        permit = await limiter.acquire()
        starts.append(permit.started_at)
        if delay == 0:
            await time.sleep(0.1)
            limiter.rate_limited(permit, retry_after=2.5)

    asyncio.run(time.run(*(worker(d) for d in (0.0, 0.2, 0.3, 1.0, 2.0))))
    # The first is answered 429 at 0.1 with Retry-After 2.5: the rest wait until 2.6.
    assert sorted(starts) == [0.0, 2.6, 2.6, 2.6, 2.6]
    assert limiter.rate == 5
