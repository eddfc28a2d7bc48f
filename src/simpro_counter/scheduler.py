"""Background loop that refreshes values that are missing or stale.

Safe with many replicas: each one checks on its own, and the refresh lock lets exactly
one of them scan while the others skip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from simpro_counter.metrics import refresh_groups
from simpro_counter.refresh import Refresher, RefreshMode
from simpro_counter.store.base import Store
from simpro_counter.store.tasks import stop_task

log = logging.getLogger("simpro_counter.scheduler")


class Scheduler:
    def __init__(
        self,
        store: Store,
        refresher: Refresher,
        *,
        interval: float,
        full_every: float = 86400.0,
        metrics: tuple[str, ...] | None = None,
        clock: Callable[[], float] = time.time,
        rebuild_retry: float | None = None,
    ) -> None:
        self._store = store
        self._refresher = refresher
        self._interval = interval
        # A value whose ledger rebuild failed is scanned again this long after it was
        # computed (while Redis answers): soon enough that webhook events move the counts
        # again within minutes, not when the value turns stale hours later; seldom enough
        # that a Redis which cannot hold the ledger does not get a scan at every check.
        self._rebuild_retry = 5 * interval if rebuild_retry is None else rebuild_retry
        self._full_every = full_every
        # One metric per refresh: refreshing `customers` refreshes invoices and revenue.
        self._metrics = metrics or refresh_groups()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> list[str]:
        """Start a background refresh of every metric that is missing, stale, or computed
        under another invoice filter or ledger format (after an upgrade or a change of
        INVOICE_TYPES / INVOICE_STAGES: the ledger must be rebuilt before webhooks and
        syncs can keep the invoice metrics current), or from a scan whose ledger rebuild
        failed, `rebuild_retry` seconds after it (while Redis answers).

        Returns the metrics it started (here; another replica may win the lock).
        """
        started = []
        for metric in self._metrics:
            value = await self._store.read(metric)
            now = self._clock()
            outdated = value is not None and self._refresher.computed_under_other_rules(value)
            unbuilt = (
                value is not None
                and self._store.storage == "redis"
                and self._refresher.ledger_rebuild_failed(value)
                and now - value.computed_at >= self._rebuild_retry
            )
            due = value is None or value.is_stale(now) or outdated or unbuilt
            if due and not await self._refresher.is_refreshing(metric):
                mode: RefreshMode = "full"
                if value is not None and self._refresher.can_sync(value):
                    full_scan_at = value.provenance.full_scan_at
                    last_full = value.computed_at if full_scan_at is None else full_scan_at
                    if now - last_full < self._full_every:
                        mode = "incremental"  # what changed since the last sync only
                reason = (
                    "no value yet"
                    if value is None
                    else "computed under another invoice filter or ledger format"
                    if outdated
                    else "its ledger rebuild failed: webhook events cannot move it"
                    if unbuilt
                    else "value is stale"
                )
                log.info("Refreshing %s (%s): %s", metric, mode, reason)
                if self._refresher.start_background(metric, mode=mode):
                    started.append(metric)
        return started

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # the loop must outlive any one failed check
                log.exception("Scheduler check failed; trying again in %.0f s", self._interval)
            await asyncio.sleep(self._interval)
