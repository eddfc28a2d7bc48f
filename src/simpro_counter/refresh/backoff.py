"""How soon a read may start a refresh again after refreshes of its group failed.

A read that finds no value (or a stale one) starts a refresh in the background. While
Simpro refuses every request (a wrong API key, a build that is down), each such refresh
fails at once, and without a pause every anonymous read would cost a Simpro request out
of the build's shared rate limit. So after a failure the next read-triggered start waits
`base` seconds, doubling with each consecutive failure up to `cap`; a success forgets
the failures. Refreshes asked for with the admin token, and the scheduler's, do not wait.

State is per process and per refresh group (replicas back off on their own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Seconds before the first retry after a failure, and the longest wait.
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 300.0


@dataclass(frozen=True)
class Failures:
    """Consecutive failed refreshes of a group, and when a read may start one again."""

    count: int
    wait: float
    """Seconds reads wait after the last failure."""
    retry_at: float
    """On the backoff's monotonic clock."""


class TriggerBackoff:
    """Consecutive failures per refresh group, and whether a read may start one now."""

    def __init__(
        self,
        *,
        base: float = BACKOFF_BASE_SECONDS,
        cap: float = BACKOFF_CAP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap, not {base} and {cap}")
        self.base = base
        self.cap = cap
        self._clock = clock
        self._failures: dict[str, Failures] = {}

    def due(self, group: str) -> bool:
        """True when no failure of `group` asks a read to wait any longer."""
        failures = self._failures.get(group)
        return failures is None or self._clock() >= failures.retry_at

    def failures(self, group: str) -> Failures | None:
        return self._failures.get(group)

    def failed(self, group: str) -> Failures:
        """Count a failed refresh of `group`: the wait doubles, up to the cap."""
        count = 1 + (self._failures[group].count if group in self._failures else 0)
        # min(...) before the power would overflow: 2 ** 1100 is no float.
        wait = min(self.cap, self.base * 2.0 ** min(count - 1, 64))
        failures = Failures(count, wait, self._clock() + wait)
        self._failures[group] = failures
        return failures

    def succeeded(self, group: str) -> None:
        """A refresh of `group` worked: reads start refreshes at once again."""
        self._failures.pop(group, None)
