"""A refresh: one full scan of a metric under the store's lock, published only when complete.

Only one refresh of a metric runs at a time across every replica: the lock is
`SET NX PX` with a random token, extended by a heartbeat while the scan runs, and
released by compare-and-delete; a killed holder frees it within `LOCK_TTL_SECONDS`.
Every refresh takes a fencing token before it scans, and the store refuses a value whose
token is older than the stored one, so a slow refresh that lost its lock cannot
overwrite a newer value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import httpx
from redis.exceptions import RedisError

from simpro_counter.errors import RefreshRunningError, SimproCounterError, StoreError
from simpro_counter.keys import LOCK_TTL_SECONDS
from simpro_counter.scan import ScanObserver, ScanReport, scan_invoices
from simpro_counter.settings import SimproConfig
from simpro_counter.simpro import SimproClient
from simpro_counter.store.base import Store
from simpro_counter.store.ledger import InvoiceLedgerStore, LedgerRebuild
from simpro_counter.store.tasks import stop_task
from simpro_counter.store.values import MetricValue, RefreshStatus
from simpro_counter.sync import SyncReport, sync_changes
from simpro_counter.telemetry import Telemetry

log = logging.getLogger("simpro_counter.refresh")

CUSTOMERS = "customers"
RefreshMode = Literal["full", "incremental"]


def can_sync(value: MetricValue) -> bool:
    """An incremental sync needs a cursor and a ledger rebuilt by a full scan."""
    return bool(value.details.get("cursor")) and "ledgerVersion" in value.details


class Refresher:
    """Runs refreshes of the customers metric for one app instance."""

    def __init__(
        self,
        store: Store,
        simpro: SimproConfig,
        *,
        ttl: int,
        telemetry: Telemetry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        ledger: InvoiceLedgerStore | None = None,
        clock: Callable[[], float] = time.time,
        lock_ttl: float = LOCK_TTL_SECONDS,
    ) -> None:
        self.store = store
        self.simpro = simpro
        self.ttl = ttl
        self.telemetry = telemetry or Telemetry()
        self._transport = transport
        self.ledger = ledger
        self._clock = clock
        self._lock_ttl_ms = int(lock_ttl * 1000)
        # Extended three times per TTL: two missed beats still leave the lock held.
        self._heartbeat = lock_ttl / 3
        self._running: dict[str, asyncio.Task[MetricValue]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def running_here(self, metric: str = CUSTOMERS) -> bool:
        task = self._running.get(metric)
        return task is not None and not task.done()

    async def is_refreshing(self, metric: str = CUSTOMERS) -> bool:
        """True when a refresh runs here or on any replica."""
        return self.running_here(metric) or await self.store.lock_held(metric)

    async def refresh(
        self,
        metric: str = CUSTOMERS,
        *,
        observer: ScanObserver | None = None,
        mode: RefreshMode = "full",
    ) -> MetricValue:
        """Run a refresh now and return the published value.

        `full` scans every invoice and rebuilds the ledger; `incremental` applies only what
        changed since the last sync (a full refresh when there is no cursor yet).

        Raises :class:`RefreshRunningError` when one is already running anywhere, and the
        scan's error when Simpro fails (the stored value is then left as it was).
        """
        if self.running_here(metric):
            raise RefreshRunningError(f"a refresh of {metric} is already running")
        task = asyncio.create_task(self._locked_refresh(metric, observer, mode))
        self._running[metric] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._running.pop(metric, None)

    def start_background(self, metric: str = CUSTOMERS, *, mode: RefreshMode = "full") -> bool:
        """Start a refresh without waiting for it; False if one already runs here."""
        if self.running_here(metric):
            return False

        async def run() -> None:
            with contextlib.suppress(RefreshRunningError, SimproCounterError):
                await self.refresh(metric, mode=mode)  # failures are logged in the status

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return True

    async def aclose(self) -> None:
        """Cancel running refreshes (their locks are released) and wait for them."""
        for task in [*self._running.values(), *self._background]:
            with contextlib.suppress(Exception):  # its failure was logged and recorded
                await stop_task(task)

    async def _locked_refresh(
        self, metric: str, observer: ScanObserver | None, mode: RefreshMode
    ) -> MetricValue:
        token = secrets.token_hex(16)
        if not await self.store.acquire_lock(metric, token, self._lock_ttl_ms):
            raise RefreshRunningError(f"a refresh of {metric} is already running elsewhere")
        started = self._clock()
        scan = asyncio.create_task(self._scan_and_publish(metric, started, observer, mode))
        heartbeat = asyncio.create_task(self._keep_lock(metric, token, scan))
        try:
            return await scan
        finally:
            for task in (heartbeat, scan):
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await stop_task(task)
            await self.store.release_lock(metric, token)

    async def _keep_lock(self, metric: str, token: str, scan: asyncio.Task[MetricValue]) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            if not await self.store.extend_lock(metric, token, self._lock_ttl_ms):
                log.warning("Refresh of %s lost its lock; stopping it", metric)
                scan.cancel()
                return

    async def _scan_and_publish(
        self, metric: str, started: float, observer: ScanObserver | None, mode: RefreshMode
    ) -> MetricValue:
        status = await self.store.read_status(metric) or RefreshStatus(metric)
        await self.store.write_status(replace(status, last_started_at=started))
        current = await self.store.read(metric) if mode == "incremental" else None
        if (
            current is None
            or not can_sync(current)
            or self.ledger is None
            or self.store.storage != "redis"  # the ledger lives in Redis
        ):
            mode = "full"
        log.info("Refresh of %s started (%s)", metric, mode)
        fence = await self.store.next_fence(metric)
        try:
            if current is not None and self.ledger is not None and mode == "incremental":
                synced = await self._sync(self.ledger, str(current.details["cursor"]))
                count, report_json = synced.customers, synced.as_json()
                details = {**current.details, "cursor": synced.cursor, "lastSync": report_json}
            else:
                count, details = await self._full(observer)
                report_json = details
        except (SimproCounterError, RedisError, OSError) as exc:
            await self._failed(metric, status, started, exc)
            raise
        value = MetricValue(
            metric=metric,
            value=count,
            computed_at=self._clock(),
            ttl=self.ttl,
            fence=fence,
            details=details,
        )
        published = await self.store.publish(value)
        finished = self._clock()
        self.telemetry.refresh_duration.labels(metric, mode).observe(finished - started)
        entry = {"mode": mode, **report_json, "count": count}
        await self.store.write_status(
            replace(
                status,
                last_started_at=started,
                last_finished_at=finished,
                last_success_at=finished,
                last_error=None,
                last_error_at=None,
                last_report=entry,
            )
        )
        await self.store.push_history(
            {"metric": metric, "finishedAt": finished, "ok": True, **entry}
        )
        if published:
            log.info(
                "Refresh done (%s): %s %s in %.1f s (%s requests)",
                mode,
                f"{count:,}",
                metric,
                finished - started,
                report_json.get("requests"),
            )
            return value
        log.warning("Refresh of %s finished but a newer value was already stored", metric)
        return await self.store.read(metric) or value

    async def _full(self, observer: ScanObserver | None) -> tuple[int, dict[str, Any]]:
        """A full scan, and the ledger rebuilt from it; the count and the details to keep."""
        journal_from = await self._ledger_version()
        report, customer_of = await self._scan(observer)
        count, details = report.count, report.as_json()
        drift = await self._drift(report.count)
        if drift:
            details["drift"] = drift
            log.warning(
                "Full reconciliation: the scan found %+d customers against what webhooks and "
                "incremental syncs had kept (changes they missed, e.g. deletions); corrected",
                drift,
            )
        rebuilt = await self._rebuild_ledger(customer_of, journal_from)
        del customer_of  # the scan's per-invoice map can be large; the ledger holds it now
        if rebuilt is not None:
            # The scan plus every webhook event applied while it ran.
            count = rebuilt.customers
            details["ledgerVersion"] = rebuilt.version
        details["fullScanAt"] = self._clock()
        return count, details

    async def _drift(self, scanned: int) -> int:
        """How far the kept-current count had drifted from a full scan's (0: not known)."""
        if self.ledger is None:
            return 0
        try:
            previous = await self.store.read(CUSTOMERS)
            if previous is None or "ledgerVersion" not in previous.details:
                return 0  # the ledger was never rebuilt: nothing was kept current
            kept = await self.ledger.counts()
        except (RedisError, OSError, StoreError):
            return 0
        return scanned - kept.customers

    async def _sync(self, ledger: InvoiceLedgerStore, cursor: str) -> SyncReport:
        async with SimproClient(self.simpro, transport=self._transport) as client:
            try:
                return await sync_changes(client, ledger, cursor)
            finally:
                self.telemetry.record_requests(client.stats.by_status)

    async def _scan(
        self, observer: ScanObserver | None
    ) -> tuple[ScanReport, dict[int, int | None]]:
        async with SimproClient(self.simpro, transport=self._transport) as client:
            try:
                return await scan_invoices(client, observer=observer)
            finally:
                self.telemetry.record_requests(client.stats.by_status)

    async def _ledger_version(self) -> int | None:
        if self.ledger is None:
            return None
        try:
            return await self.ledger.version()
        except (RedisError, OSError, StoreError) as exc:
            log.warning("Invoice ledger unavailable (%s): publishing the scan's count only", exc)
            return None

    async def _rebuild_ledger(
        self, customer_of: dict[int, int | None], journal_from: int | None
    ) -> LedgerRebuild | None:
        """Replace the per-invoice state webhooks update; None when Redis cannot hold it."""
        if self.ledger is None or journal_from is None:
            return None
        try:
            return await self.ledger.rebuild(customer_of, journal_from=journal_from)
        except (RedisError, OSError, StoreError) as exc:
            # Includes a journal trimmed past the scan's start: the next refresh rebuilds.
            log.warning("Invoice ledger not rebuilt (%s): publishing the scan's count", exc)
            return None

    async def _failed(
        self, metric: str, status: RefreshStatus, started: float, exc: Exception
    ) -> None:
        finished = self._clock()
        self.telemetry.refresh_duration.labels(metric, "error").observe(finished - started)
        await self.store.write_status(
            replace(
                status,
                last_started_at=started,
                last_finished_at=finished,
                last_error=str(exc),
                last_error_at=finished,
            )
        )
        await self.store.push_history(
            {"metric": metric, "finishedAt": finished, "ok": False, "error": str(exc)}
        )
        log.error("Refresh of %s failed, the previous value is kept: %s", metric, exc)
