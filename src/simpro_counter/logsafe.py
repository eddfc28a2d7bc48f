"""Warnings that clients can trigger at will, logged at a bounded rate.

A wrong token, a badly signed webhook or a malformed body each deserve a WARNING, but a
client sending thousands of them must not fill the disk or bury the lines that matter.
`RateLimitedLog` lets the first `burst` warnings of one kind through in each `interval`,
then keeps quiet about that kind until the interval ends; the first warning after it says
how many were left out. Kinds are names chosen by the code (`login`, `webhook`), never
text from a request, so their number stays small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

# A person's mistakes stay below this; a flood is cut after it.
BURST = 10
INTERVAL_SECONDS = 60.0


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


class RateLimitedLog:
    """At most `burst` warnings per kind per `interval`; the rest are counted, not logged."""

    def __init__(
        self,
        *,
        burst: int = BURST,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._interval = interval
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def warning(self, logger: logging.Logger, kind: str, message: str, *args: object) -> None:
        """Log `message % args` on `logger` unless `kind` has had its `burst` this interval."""
        now = self._clock()
        window = self._windows.get(kind)
        if window is None or now - window.started >= self._interval:
            if window is not None and window.suppressed:
                logger.warning(
                    "%d more %s warnings suppressed in the last %g s",
                    window.suppressed,
                    kind,
                    self._interval,
                )
            window = self._windows[kind] = _Window(started=now)
        if window.logged < self._burst:
            window.logged += 1
            logger.warning(message, *args)
            return
        if not window.suppressed:
            remaining = window.started + self._interval - now
            logger.warning("Further %s warnings suppressed for %.0f s", kind, remaining)
        window.suppressed += 1

    def suppressed(self, kind: str) -> int:
        """How many warnings of `kind` the current interval has left out so far."""
        window = self._windows.get(kind)
        return window.suppressed if window is not None else 0
