"""Customer growth history, read from the invoice ledger and kept as current as it is.

Each customer is new in the period of its first invoice. The ledger keeps, with every
event, how many customers had their first invoice on each day (`first_day_numbers`, by
day number since 1970-01-01, turned into dates by the ledger's read; a full scan
fills it with the whole past, webhooks and incremental syncs keep it current), so the
history is exact from the first scan on and moves with every event, like the count.

Reading it is one MULTI of a hash with a field per starting day (about 2 ms with the
grouping into periods, whatever the number of invoices: `docs/performance.md`); while the
ledger's version does not change, one GET of it. The periods of each interval are cached
by version. When Redis cannot be read, the last history read here is served; with none,
`HistoryUnavailableError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from simpro_counter.errors import HistoryUnavailableError, StoreError
from simpro_counter.logsafe import RateLimitedLog
from simpro_counter.metrics import HistoryPoint, Interval, growth_from_days
from simpro_counter.store.ledger import FirstDays, InvoiceLedgerStore

# HistoryUnavailableError lives in errors.py; also importable from here, where it is raised.
__all__ = ["CustomerGrowth", "GrowthHistory", "HistoryUnavailableError"]

log = logging.getLogger("simpro_counter.growth")
# Every anonymous read of the history during an outage would log a line otherwise.
_warnings = RateLimitedLog()


@dataclass(frozen=True)
class GrowthHistory:
    interval: Interval
    points: list[HistoryPoint]
    version: int
    computed_at: float
    """Epoch seconds at which the ledger was read."""
    undated: int
    """Customers the history cannot place: none of their invoices has a date."""


class CustomerGrowth:
    """Growth history per interval from the ledger, cached by ledger version."""

    def __init__(self, ledger: InvoiceLedgerStore) -> None:
        self._ledger = ledger
        self._read: tuple[FirstDays, float] | None = None  # the last read, and when
        self._histories: dict[Interval, GrowthHistory] = {}
        self._lock = asyncio.Lock()

    async def history(self, interval: Interval, *, ready: bool) -> GrowthHistory:
        """New and cumulative customers per period.

        `ready` says whether a full scan has rebuilt the ledger (the published value is
        built on it); before that the ledger is partial and nothing is answered.
        """
        if not ready:
            raise HistoryUnavailableError(
                "The growth history is computed by the first full scan; it has not "
                "finished yet. Ask again shortly."
            )
        first, read_at = await self._first_days()
        cached = self._histories.get(interval)
        if cached is None or cached.version != first.version:
            cached = GrowthHistory(
                interval=interval,
                points=growth_from_days(first.days, interval),
                version=first.version,
                computed_at=read_at,
                undated=first.customers - sum(first.days.values()),
            )
            self._histories[interval] = cached
        return cached

    async def _first_days(self) -> tuple[FirstDays, float]:
        async with self._lock:  # concurrent requests share one read
            try:
                if self._read is not None and self._read[0].version == (
                    await self._ledger.version()
                ):
                    return self._read  # unchanged: one GET
                first = await self._ledger.first_day_counts()
            except StoreError as exc:  # the ledger translates every Redis failure
                if self._read is None:
                    raise HistoryUnavailableError(
                        f"The growth history cannot be read from Redis ({exc}) and none was "
                        "read before; it will be back with Redis."
                    ) from exc
                _warnings.warning(
                    log,
                    "growth",
                    "Redis unavailable (%s): serving the last growth history read",
                    exc,
                )
                return self._read
            if self._read is None or self._read[0].version != first.version:
                self._read = (first, time.time())
            return self._read
