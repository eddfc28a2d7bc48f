"""The in-process near-cache of published values, kept honest by pub/sub invalidation.

An entry is trusted for as long as the events subscription has been up since it was
fetched: any publish in between would have invalidated it. Without a live subscription an
entry is trusted only for `unsubscribed_ttl` seconds after its fetch, so a replica that
missed messages re-reads Redis at least that often.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from simpro_counter.store.values import MetricValue


@dataclass(frozen=True)
class Ticket:
    """Taken before a read-through; a newer invalidation makes its result too old to keep."""

    generation: int
    version: int


@dataclass(frozen=True)
class _Entry:
    value: MetricValue | None  # None: known to be absent
    fetched_at: float
    generation: int


class NearCache:
    """Last value (or known absence) per metric, with the trust rules above."""

    def __init__(
        self, *, unsubscribed_ttl: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._unsubscribed_ttl = unsubscribed_ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._versions: dict[str, int] = {}
        # Bumped whenever messages may have been missed (subscription down or re-made).
        self._generation = 0
        self.live = False

    def get(self, metric: str) -> tuple[bool, MetricValue | None]:
        """(hit, value): on a hit the value (or None for "absent") can be served as is."""
        entry = self._entries.get(metric)
        if entry is None:
            return False, None
        if self.live and entry.generation == self._generation:
            return True, entry.value
        return self._clock() - entry.fetched_at < self._unsubscribed_ttl, entry.value

    def ticket(self, metric: str) -> Ticket:
        return Ticket(self._generation, self._versions.get(metric, 0))

    def put(self, metric: str, value: MetricValue | None, ticket: Ticket) -> None:
        """Keep what a read-through returned, unless the metric was invalidated meanwhile."""
        if self._versions.get(metric, 0) != ticket.version:
            return
        self._entries[metric] = _Entry(value, self._clock(), ticket.generation)

    def set(self, value: MetricValue) -> None:
        """Keep a value this process just published; reads in flight may not replace it."""
        self._versions[value.metric] = self._versions.get(value.metric, 0) + 1
        self._entries[value.metric] = _Entry(value, self._clock(), self._generation)

    def invalidate(self, metric: str) -> None:
        self._versions[metric] = self._versions.get(metric, 0) + 1
        self._entries.pop(metric, None)

    def clear(self) -> None:
        for metric in list(self._entries):
            self.invalidate(metric)
        self._generation += 1

    def subscription_up(self) -> None:
        # Entries fetched before this moment may have missed messages: re-read them now
        # rather than serve them for up to `unsubscribed_ttl` more.
        self.clear()
        self.live = True

    def subscription_down(self) -> None:
        self._generation += 1
        self.live = False
