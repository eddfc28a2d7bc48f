"""Slowing down guessing of ADMIN_TOKEN: failed logins per client, in memory."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

# A person mistyping the token stays far below this; a guesser is stopped after it.
MAX_FAILURES = 10
WINDOW_SECONDS = 300.0
# Bounds the memory a flood of distinct client addresses can take.
_MAX_CLIENTS = 10_000


class LoginThrottle:
    """Counts failed logins per client over a sliding window; past the limit, refuse."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        recent = self._recent(client)
        if len(recent) < self._max:
            return 0
        return max(1, int(recent[0] + self._window - self._clock()) + 1)

    def failed(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= _MAX_CLIENTS:
            self._forget_oldest()
        self._failures.setdefault(client, deque()).append(self._clock())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        times = self._failures.get(client, deque())
        cutoff = self._clock() - self._window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            self._failures.pop(client, None)
        return times

    def _forget_oldest(self) -> None:
        # Dicts keep insertion order: the first key is the client that started failing first.
        self._failures.pop(next(iter(self._failures)))
