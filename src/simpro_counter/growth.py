"""Customer growth history, read from the invoice ledger and kept as current as it is.

Each customer is new in the period of its first invoice. The ledger holds every counted
invoice with its customer and date (a full scan fills it with the whole past; webhooks
and incremental syncs keep it current), so the history is exact from the first scan on
and moves with every event, like the count.

Reading the ledger costs one HSCAN pass over the invoices (measured in
`docs/performance.md`), so the first dates are cached by the ledger's version: a request
while nothing changed reuses them, and concurrent requests share one pass. When Redis
cannot be read, the last history computed here is served; with none, `HistoryUnavailableError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import date

from redis.exceptions import RedisError

from simpro_counter.errors import SimproCounterError, StoreError
from simpro_counter.metrics import HistoryPoint, Interval, growth_history
from simpro_counter.store.ledger import InvoiceLedgerStore

log = logging.getLogger("simpro_counter.growth")


class HistoryUnavailableError(SimproCounterError):
    """No history yet: no full scan has filled the ledger, or Redis never answered."""


@dataclass(frozen=True)
class FirstDates:
    """Each customer's first invoice date, as of one ledger version."""

    dates: dict[int, date]
    version: int
    computed_at: float
    """Epoch seconds at which they were read."""
    customers: int
    """Customers in the ledger then (those without any dated invoice are not in `dates`)."""


@dataclass(frozen=True)
class GrowthHistory:
    interval: Interval
    points: list[HistoryPoint]
    version: int
    computed_at: float
    undated: int
    """Customers the history cannot place: none of their invoices has a date."""


class CustomerGrowth:
    """Growth history per interval from the ledger, cached by ledger version."""

    def __init__(self, ledger: InvoiceLedgerStore) -> None:
        self._ledger = ledger
        self._cached: FirstDates | None = None
        # Points per interval of the cached first dates (grouping 14k customers into
        # periods costs ~2.5 ms: not per request).
        self._points: dict[Interval, tuple[FirstDates, list[HistoryPoint]]] = {}
        self._lock = asyncio.Lock()

    async def history(self, interval: Interval, *, ready: bool) -> GrowthHistory:
        """New and cumulative customers per period.

        `ready` says whether a full scan has rebuilt the ledger (the published value is
        built on it); before that the ledger is partial and nothing is answered.
        """
        first = await self._first_dates(ready=ready)
        cached = self._points.get(interval)
        if cached is None or cached[0] is not first:
            cached = (first, growth_history(first.dates, interval))
            self._points[interval] = cached
        return GrowthHistory(
            interval=interval,
            points=cached[1],
            version=first.version,
            computed_at=first.computed_at,
            undated=first.customers - len(first.dates),
        )

    async def _first_dates(self, *, ready: bool) -> FirstDates:
        try:
            if not ready:
                raise HistoryUnavailableError(
                    "The growth history is computed by the first full scan; it has not "
                    "finished yet. Ask again shortly."
                )
            async with self._lock:
                version = await self._ledger.version()
                cached = self._cached
                if cached is not None and cached.version == version:
                    return cached
                started = time.monotonic()
                growth = await self._ledger.customer_growth()
                self._cached = FirstDates(
                    growth.first_dates, version, time.time(), growth.customers
                )
                dates = growth.first_dates
                log.info(
                    "Growth history read from the ledger (version %s): %s customers in %.0f ms",
                    version,
                    f"{len(dates):,}",
                    (time.monotonic() - started) * 1000,
                )
                return self._cached
        except (RedisError, OSError, StoreError) as exc:
            if self._cached is None:
                raise HistoryUnavailableError(
                    f"The growth history cannot be read from Redis ({exc}) and none was "
                    "read before; it will be back with Redis."
                ) from exc
            log.warning("Redis unavailable (%s): serving the last growth history read", exc)
            return self._cached
