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

import httpx
from redis.exceptions import RedisError

from simpro_counter.errors import RefreshRunningError, SimproCounterError, StoreError
from simpro_counter.keys import LOCK_HEARTBEAT_SECONDS, LOCK_TTL_SECONDS
from simpro_counter.scan import ScanObserver, ScanReport, scan_invoices
from simpro_counter.settings import SimproConfig
from simpro_counter.simpro import SimproClient
from simpro_counter.store.base import Store
from simpro_counter.store.ledger import InvoiceLedgerStore, LedgerRebuild
from simpro_counter.store.tasks import stop_task
from simpro_counter.store.values import MetricValue, RefreshStatus
from simpro_counter.telemetry import Telemetry

log = logging.getLogger("simpro_counter.refresh")

CUSTOMERS = "customers"


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
        heartbeat: float = LOCK_HEARTBEAT_SECONDS,
    ) -> None:
        self.store = store
        self.simpro = simpro
        self.ttl = ttl
        self.telemetry = telemetry or Telemetry()
        self._transport = transport
        self.ledger = ledger
        self._clock = clock
        self._lock_ttl_ms = int(lock_ttl * 1000)
        self._heartbeat = heartbeat
        self._running: dict[str, asyncio.Task[MetricValue]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def running_here(self, metric: str = CUSTOMERS) -> bool:
        task = self._running.get(metric)
        return task is not None and not task.done()

    async def is_refreshing(self, metric: str = CUSTOMERS) -> bool:
        """True when a refresh runs here or on any replica."""
        return self.running_here(metric) or await self.store.lock_held(metric)

    async def refresh(
        self, metric: str = CUSTOMERS, *, observer: ScanObserver | None = None
    ) -> MetricValue:
        """Run a full refresh now and return the published value.

        Raises :class:`RefreshRunningError` when one is already running anywhere, and the
        scan's error when Simpro fails (the stored value is then left as it was).
        """
        if self.running_here(metric):
            raise RefreshRunningError(f"a refresh of {metric} is already running")
        task = asyncio.create_task(self._locked_refresh(metric, observer))
        self._running[metric] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._running.pop(metric, None)

    def start_background(self, metric: str = CUSTOMERS) -> bool:
        """Start a refresh without waiting for it; False if one already runs here."""
        if self.running_here(metric):
            return False

        async def run() -> None:
            with contextlib.suppress(RefreshRunningError, SimproCounterError):
                await self.refresh(metric)  # failures are logged and kept in the status

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return True

    async def aclose(self) -> None:
        """Cancel running refreshes (their locks are released) and wait for them."""
        for task in [*self._running.values(), *self._background]:
            with contextlib.suppress(Exception):  # its failure was logged and recorded
                await stop_task(task)

    async def _locked_refresh(self, metric: str, observer: ScanObserver | None) -> MetricValue:
        token = secrets.token_hex(16)
        if not await self.store.acquire_lock(metric, token, self._lock_ttl_ms):
            raise RefreshRunningError(f"a refresh of {metric} is already running elsewhere")
        started = self._clock()
        scan = asyncio.create_task(self._scan_and_publish(metric, started, observer))
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
        self, metric: str, started: float, observer: ScanObserver | None
    ) -> MetricValue:
        status = await self.store.read_status(metric) or RefreshStatus(metric)
        await self.store.write_status(replace(status, last_started_at=started))
        log.info("Refresh of %s started", metric)
        fence = await self.store.next_fence(metric)
        journal_from = await self._ledger_version()
        try:
            report, customer_of = await self._scan(observer)
        except SimproCounterError as exc:
            await self._failed(metric, status, started, exc)
            raise
        count, details = report.count, report.as_json()
        rebuilt = await self._rebuild_ledger(customer_of, journal_from)
        del customer_of  # the scan's per-invoice map can be large; the ledger holds it now
        if rebuilt is not None:
            # The scan plus every webhook event applied while it ran.
            count = rebuilt.customers
            details["ledgerVersion"] = rebuilt.version
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
        self.telemetry.refresh_duration.labels(metric, "success").observe(report.duration)
        await self.store.write_status(
            replace(
                status,
                last_started_at=started,
                last_finished_at=finished,
                last_success_at=finished,
                last_error=None,
                last_error_at=None,
                last_report=report.as_json(),
            )
        )
        await self.store.push_history(
            {"metric": metric, "finishedAt": finished, "ok": True, **report.as_json()}
        )
        if published:
            log.info(
                "Refresh done: %s %s from %s invoices in %.1f s (%s requests, %s retries)",
                f"{count:,}",
                metric,
                f"{report.total_invoices:,}",
                report.duration,
                report.requests,
                report.retries,
            )
            return value
        log.warning("Refresh of %s finished but a newer value was already stored", metric)
        return await self.store.read(metric) or value

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
