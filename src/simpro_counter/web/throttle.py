"""Slowing down guessing of ADMIN_TOKEN: attempts per client and in total, in memory.

Every place that checks the token (admin login, `Authorization: Bearer` on refresh and on
the detailed `/readyz` and refresh status) spends from one `TokenThrottle` per process:
they all guess the same secret, so separate budgets would only multiply a guesser's rate.

An attempt is reserved *before* the token is read (a login's body may be held open for
seconds, and parallel requests must not all pass a check made before any of them was
counted) and refunded when the token was right. Refused attempts are not counted, so a
lockout always ends one window after the guessing stops: an address shared with the
admin (a proxy, a NAT) cannot keep them locked out by guessing slowly forever. While a
client (or everyone, past the global limit) is throttled, every attempt is refused,
the right token included, so a throttled answer says nothing about the token.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# A person mistyping the token stays far below this; a guesser is stopped after it.
MAX_FAILURES = 10
# Guesses from many addresses at once (a botnet) are bounded by this, in total. The
# price: such a flood also refuses the admin until it stops (then one window more).
MAX_GLOBAL_FAILURES = 100
WINDOW_SECONDS = 300.0
# Bounds the memory a flood of distinct client addresses can take.
_MAX_CLIENTS = 10_000


@dataclass(frozen=True)
class Reservation:
    """One counted attempt; hand it back with `refund` when the token was right."""

    client: str
    at: float


@dataclass(frozen=True)
class Throttled:
    """The attempt was refused and not counted; the client may retry after this long."""

    retry_after: int


class TokenThrottle:
    """Counts token attempts per client and in total over a sliding window."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        max_global: int = MAX_GLOBAL_FAILURES,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._max_global = max_global
        self._window = window
        self._clock = clock
        self._clients: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def reserve(self, client: str) -> Reservation | Throttled:
        """Count an attempt of `client`, or refuse it (uncounted) while throttled."""
        now = self._clock()
        wait = self._retry_after(client, now)
        if wait:
            return Throttled(wait)
        if client not in self._clients and len(self._clients) >= _MAX_CLIENTS:
            self._forget_expired(now)
            if len(self._clients) >= _MAX_CLIENTS:
                # Dicts keep insertion order: the first key started failing first.
                self._clients.pop(next(iter(self._clients)))
        self._clients.setdefault(client, deque()).append(now)
        self._all.append(now)
        return Reservation(client, now)

    def refund(self, reservation: Reservation) -> None:
        """The attempt was right: it does not count against the client or the total."""
        _discard(self._clients.get(reservation.client), reservation.at)
        _discard(self._all, reservation.at)
        if not self._clients.get(reservation.client, True):
            del self._clients[reservation.client]

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        return self._retry_after(client, self._clock())

    def _retry_after(self, client: str, now: float) -> int:
        cutoff = now - self._window
        _expire(self._all, cutoff)
        times = self._clients.get(client)
        if times is not None:
            _expire(times, cutoff)
            if not times:
                del self._clients[client]
        oldest = []
        if times and len(times) >= self._max:
            oldest.append(times[-self._max])
        if len(self._all) >= self._max_global:
            oldest.append(self._all[-self._max_global])
        if not oldest:
            return 0
        return max(1, int(max(oldest) + self._window - now) + 1)

    def _forget_expired(self, now: float) -> None:
        cutoff = now - self._window
        for client in list(self._clients):
            _expire(self._clients[client], cutoff)
            if not self._clients[client]:
                del self._clients[client]


def _expire(times: deque[float], cutoff: float) -> None:
    while times and times[0] <= cutoff:
        times.popleft()


def _discard(times: deque[float] | None, at: float) -> None:
    if times is not None and at in times:
        times.remove(at)
