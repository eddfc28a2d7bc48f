"""Which Simpro failures are worth retrying, and how long to wait before the next attempt.

The waiting itself is stamina's (jittered exponential backoff, bounded in attempts and
total time); this module only classifies. `stamina.set_testing(True, attempts=N)` turns
the waits off in tests.
"""

from __future__ import annotations

import email.utils
import time

import httpx


class TransientError(Exception):
    """A failure that may go away on its own: 429, 5xx, a broken body."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, rate_limited: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


# The longest Retry-After we obey as given; a larger one is capped so a retry budget of a
# couple of minutes is not spent on one sleep.
_MAX_RETRY_AFTER_SECONDS = 30.0


def backoff_for(exc: Exception) -> bool | float:
    """stamina's `on=` hook: False to fail at once, True to back off, a float to wait exactly."""
    if isinstance(exc, TransientError):
        if exc.retry_after is not None:
            return exc.retry_after
        return True
    # Timeouts, refused and dropped connections, and bodies that fail to decode.
    return isinstance(exc, httpx.TransportError | httpx.DecodingError)


def backoff_for_unsafe(exc: Exception) -> bool | float:
    """Like :func:`backoff_for`, for requests Simpro must not receive twice (POST, ...).

    Retried only when Simpro certainly did not act on it: rate limited, or never connected.
    """
    if isinstance(exc, TransientError) and exc.rate_limited:
        return exc.retry_after if exc.retry_after is not None else True
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS)


def describe(exc: BaseException) -> str:
    """A short human description of a failed attempt, for error messages."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.TransportError):
        detail = str(exc) or type(exc).__name__
        return f"connection failed: {detail}"
    return str(exc) or type(exc).__name__
