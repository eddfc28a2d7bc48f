"""The `Store` protocol inside one process: the fallback and mirror of the Redis store.

Its lock and fences only coordinate the tasks of this process; another replica cannot
see them. That is enough while Redis is down (each replica then refreshes on its own and
the newest value wins once Redis is back) and for single-process use without Redis.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from simpro_counter.keys import HISTORY_LENGTH
from simpro_counter.store.base import StorageName
from simpro_counter.store.values import MetricValue, RefreshStatus


def newer(candidate: MetricValue, than: MetricValue | None) -> bool:
    """Whether `candidate` is newer than `than`: higher fence, then later ledger version,
    then later computed_at."""
    if than is None:
        return True
    return (*candidate.order(), candidate.computed_at) > (*than.order(), than.computed_at)


class MemoryStore:
    """`Store` in a few dicts; locks expire by `clock` (monotonic seconds)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, MetricValue] = {}
        self._published: dict[str, tuple[int, int]] = {}  # metric -> (fence, ledger version)
        self._fences: dict[str, int] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._statuses: dict[str, RefreshStatus] = {}
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LENGTH)

    @property
    def storage(self) -> StorageName:
        return "memory"

    async def read(self, metric: str) -> MetricValue | None:
        return self._values.get(metric)

    async def publish(self, value: MetricValue) -> bool:
        """Store unless a higher (fence, ledger version) is stored; False if fenced off."""
        if self._published.get(value.metric, (0, -1)) > value.order():
            return False
        self._store(value)
        return True

    def remember(self, value: MetricValue) -> bool:
        """Keep `value` if it is newer than the one held (mirroring another store's value)."""
        self.observe_fence(value.metric, value.fence)
        if not newer(value, self._values.get(value.metric)):
            return False
        self._store(value)
        return True

    def observe_fence(self, metric: str, fence: int) -> None:
        """Note a fence handed out elsewhere, so `next_fence` here stays above it."""
        self._fences[metric] = max(self._fences.get(metric, 0), fence)

    def fence_counter(self, metric: str) -> int:
        """The highest fence handed out or observed for `metric`."""
        return self._fences.get(metric, 0)

    def metrics(self) -> list[str]:
        """Metrics with a fence or a value here."""
        return sorted(self._fences.keys() | self._values.keys())

    async def next_fence(self, metric: str) -> int:
        self._fences[metric] = self._fences.get(metric, 0) + 1
        return self._fences[metric]

    async def acquire_lock(self, metric: str, token: str, ttl_ms: int) -> bool:
        if self._holder(metric) is not None:
            return False
        self._locks[metric] = (token, self._clock() + ttl_ms / 1000)
        return True

    async def extend_lock(self, metric: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock if `token` still holds it; False when it was lost."""
        if self._holder(metric) != token:
            return False
        self._locks[metric] = (token, self._clock() + ttl_ms / 1000)
        return True

    async def release_lock(self, metric: str, token: str) -> bool:
        """Delete the lock only if `token` holds it (compare-and-delete)."""
        if self._holder(metric) != token:
            return False
        del self._locks[metric]
        return True

    async def lock_held(self, metric: str) -> bool:
        return self._holder(metric) is not None

    async def read_status(self, metric: str) -> RefreshStatus | None:
        return self._statuses.get(metric)

    async def write_status(self, status: RefreshStatus) -> None:
        self._statuses[status.metric] = status

    async def push_history(self, entry: dict[str, Any]) -> None:
        """Remember one finished refresh; the last `HISTORY_LENGTH` are kept."""
        self._history.appendleft(dict(entry))

    async def history(self) -> list[dict[str, Any]]:
        """Recent refreshes, newest first."""
        return [dict(entry) for entry in self._history]

    async def ping(self) -> bool:
        return True

    def _store(self, value: MetricValue) -> None:
        self._values[value.metric] = value
        self._published[value.metric] = max(
            self._published.get(value.metric, (0, -1)), value.order()
        )
        self.observe_fence(value.metric, value.fence)

    def _holder(self, metric: str) -> str | None:
        """The token holding the lock, dropping it once expired (as Redis's PX would)."""
        held = self._locks.get(metric)
        if held is None:
            return None
        token, expires_at = held
        if self._clock() >= expires_at:
            del self._locks[metric]
            return None
        return token
