"""A refresh: one scan of a metric's group under the store's lock, published only when complete.

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
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx
from redis.exceptions import RedisError

from simpro_counter.errors import RefreshRunningError, SimproCounterError, StoreError
from simpro_counter.keys import LOCK_TTL_SECONDS
from simpro_counter.metrics import (
    INVOICE_GROUP,
    METRICS,
    InvoiceFilter,
    InvoiceFold,
    display_value,
    format_value,
    group_members,
    invoice_metric_values,
    refresh_group,
)
from simpro_counter.publishing import built_on_ledger, can_sync, publish_from_ledger
from simpro_counter.scan import ScanObserver, ScanReport, scan_invoices
from simpro_counter.settings import Settings, SimproConfig, simpro_config
from simpro_counter.simpro import SimproClient
from simpro_counter.store.base import Store
from simpro_counter.store.ledger import (
    LEDGER_FORMAT,
    InvoiceLedgerStore,
    LedgerRebuild,
)
from simpro_counter.store.tasks import stop_task
from simpro_counter.store.values import MetricValue, Provenance, RefreshStatus
from simpro_counter.sync import sync_changes
from simpro_counter.telemetry import Telemetry

log = logging.getLogger("simpro_counter.refresh")

CUSTOMERS = INVOICE_GROUP
RefreshMode = Literal["full", "incremental"]


@dataclass(frozen=True)
class _Computed:
    """What one refresh found: the value of each metric it computes, and its report."""

    values: dict[str, int]
    provenance: Provenance
    details: dict[str, Any]
    """What is shown with each value, beside its provenance."""
    report: dict[str, Any]


class Refresher:
    """Runs refreshes of every metric for one app instance.

    The invoice metrics (customers, invoices, revenue) come from one scan and are
    refreshed together under the `customers` lock; jobs and quotes each cost one request.
    Any metric name may be passed; it is refreshed with its group.
    """

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
        invoice_filter: InvoiceFilter | None = None,
        currency: str = "AUD",
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
        self.invoice_filter = invoice_filter or InvoiceFilter()
        self.currency = currency
        self._running: dict[str, asyncio.Task[dict[str, MetricValue]]] = {}
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: Store,
        ledger: InvoiceLedgerStore | None,
        *,
        telemetry: Telemetry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Refresher:
        """The refresher the service and `simpro-counter refresh` both run."""
        return cls(
            store,
            simpro_config(settings),
            ttl=settings.customer_count_ttl,
            telemetry=telemetry,
            transport=transport,
            ledger=ledger,
            lock_ttl=settings.refresh_lock_ttl,
            invoice_filter=InvoiceFilter.of(
                types=settings.invoice_type_list, stages=settings.invoice_stage_list
            ),
            currency=settings.currency,
        )

    def can_sync(self, value: MetricValue) -> bool:
        return can_sync(value, self.invoice_filter)

    def built_on_ledger(self, value: MetricValue) -> bool:
        return built_on_ledger(value, self.invoice_filter)

    def computed_under_other_rules(self, value: MetricValue) -> bool:
        """True for an invoice metric's value from a scan under another invoice filter,
        or from a version before the filter and ledger format 2 existed.

        Every full scan records its filter, even one whose ledger rebuild failed (Redis
        down), so this never asks for scan after scan: only for one under the new rules.
        """
        if refresh_group(value.metric) != INVOICE_GROUP:
            return False
        return value.provenance.invoice_filter != self.invoice_filter.describe()

    def running_here(self, metric: str = CUSTOMERS) -> bool:
        task = self._running.get(refresh_group(metric))
        return task is not None and not task.done()

    async def is_refreshing(self, metric: str = CUSTOMERS) -> bool:
        """True when a refresh of the metric's group runs here or on any replica."""
        group = refresh_group(metric)
        return self.running_here(group) or await self.store.lock_held(group)

    async def refresh(
        self,
        metric: str = CUSTOMERS,
        *,
        observer: ScanObserver | None = None,
        mode: RefreshMode = "full",
        in_history: bool = True,
    ) -> MetricValue:
        """Run a refresh now and return the metric's published value.

        `full` scans every invoice and rebuilds the ledger; `incremental` applies only what
        changed since the last sync (a full refresh when there is no cursor yet). Every
        metric of the group is published (see :meth:`refresh_all`). `in_history=False`
        leaves it out of the refresh history (a recount a webhook asked for: on a busy
        build those would push every scheduled refresh out of the last 20).

        Raises :class:`RefreshRunningError` when one is already running anywhere, and the
        scan's error when Simpro fails (the stored value is then left as it was).
        """
        values = await self.refresh_all(metric, observer=observer, mode=mode, in_history=in_history)
        return values[metric]

    async def refresh_all(
        self,
        metric: str = CUSTOMERS,
        *,
        observer: ScanObserver | None = None,
        mode: RefreshMode = "full",
        in_history: bool = True,
    ) -> dict[str, MetricValue]:
        """As :meth:`refresh`, returning the value of every metric the refresh published."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}")
        group = refresh_group(metric)
        if self.running_here(group):
            raise RefreshRunningError(f"a refresh of {group} is already running")
        task = asyncio.create_task(self._locked_refresh(group, observer, mode, in_history))
        self._running[group] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._running.pop(group, None)

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
        self, metric: str, observer: ScanObserver | None, mode: RefreshMode, in_history: bool
    ) -> dict[str, MetricValue]:
        token = secrets.token_hex(16)
        if not await self.store.acquire_lock(metric, token, self._lock_ttl_ms):
            raise RefreshRunningError(f"a refresh of {metric} is already running elsewhere")
        started = self._clock()
        scan = asyncio.create_task(
            self._scan_and_publish(metric, started, observer, mode, in_history)
        )
        heartbeat = asyncio.create_task(self._keep_lock(metric, token, scan))
        try:
            return await scan
        finally:
            for task in (heartbeat, scan):
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await stop_task(task)
            await self.store.release_lock(metric, token)

    async def _keep_lock(
        self, metric: str, token: str, scan: asyncio.Task[dict[str, MetricValue]]
    ) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            if not await self.store.extend_lock(metric, token, self._lock_ttl_ms):
                log.warning("Refresh of %s lost its lock; stopping it", metric)
                scan.cancel()
                return

    async def _scan_and_publish(
        self,
        group: str,
        started: float,
        observer: ScanObserver | None,
        mode: RefreshMode,
        in_history: bool,
    ) -> dict[str, MetricValue]:
        status = await self.store.read_status(group) or RefreshStatus(group)
        await self.store.write_status(replace(status, last_started_at=started))
        current = await self.store.read(group) if mode == "incremental" else None
        if (
            current is None
            or not self.can_sync(current)
            or self.ledger is None
            or self.store.storage != "redis"  # the ledger lives in Redis
        ):
            mode = "full"
        log.info("Refresh of %s started (%s)", group, mode)
        fences = {name: await self.store.next_fence(name) for name in group_members(group)}
        try:
            if group != INVOICE_GROUP:
                computed = await self._count(group)
            elif current is not None and self.ledger is not None and mode == "incremental":
                computed = await self._sync(self.ledger, current)
            else:
                computed = await self._full(observer)
        except (SimproCounterError, RedisError, OSError) as exc:
            await self._failed(group, status, started, exc, in_history)
            raise
        computed_at = self._clock()
        published: dict[str, MetricValue] = {}
        for name, fence in fences.items():
            value = MetricValue(
                metric=name,
                value=computed.values[name],
                computed_at=computed_at,
                ttl=self.ttl,
                fence=fence,
                provenance=computed.provenance,
                report=self._details_of(name, computed.details),
            )
            if await self.store.publish(value):
                published[name] = value
            else:
                log.warning("Refresh of %s finished but a newer value was already stored", name)
                published[name] = await self.store.read(name) or value
        if group == INVOICE_GROUP:
            await self._catch_up_with_ledger(published)
        finished = self._clock()
        self.telemetry.refresh_duration.labels(group, mode).observe(finished - started)
        # Each metric's report carries its own value (the scan report's `count` is customers').
        report = {k: v for k, v in computed.report.items() if k != "count"}
        entries = {
            name: {"mode": mode, **report, **_reported_value(name, computed.values[name])}
            for name in fences
        }
        entry = entries[group]
        await self._write_statuses(
            group,
            status,
            entries,
            last_started_at=started,
            last_finished_at=finished,
            last_success_at=finished,
            last_error=None,
            last_error_at=None,
        )
        if in_history:
            await self.store.push_history(
                {"metric": group, "finishedAt": finished, "ok": True, **entry}
            )
        log.info(
            "Refresh done (%s): %s in %.1f s (%s requests)",
            mode,
            ", ".join(f"{display_value(name, v.value)} {name}" for name, v in published.items()),
            finished - started,
            computed.report.get("requests"),
        )
        return published

    async def _catch_up_with_ledger(self, published: dict[str, MetricValue]) -> None:
        """Publish again if webhook events reached the ledger after this refresh read its
        counts (between the ledger swap, or the sync, and the publish)."""
        if self.ledger is None or not all(self.built_on_ledger(v) for v in published.values()):
            return
        try:
            await publish_from_ledger(self.store, self.ledger, self.invoice_filter)
        except (RedisError, OSError, StoreError) as exc:
            log.warning("Could not bring the values up to the ledger (%s); next event will", exc)
            return
        for name in published:
            published[name] = await self.store.read(name) or published[name]

    def _details_of(self, metric: str, details: dict[str, Any]) -> dict[str, Any]:
        if METRICS[metric].kind == "sum":
            return {**details, "currency": self.currency}
        return details

    async def _count(self, metric: str) -> _Computed:
        """A metric Simpro reports in `Result-Total`: one request with `pageSize=1`."""
        started = time.monotonic()
        async with SimproClient(self.simpro, transport=self._transport) as client:
            try:
                count = await client.count(METRICS[metric].resource)
            finally:
                self.telemetry.record_requests(client.stats.by_status)
            report = {
                "requests": client.stats.requests,
                "retries": client.stats.retries,
                "duration": round(time.monotonic() - started, 3),
            }
        return _Computed({metric: count}, Provenance(), report, report)

    async def _sync(self, ledger: InvoiceLedgerStore, current: MetricValue) -> _Computed:
        """What changed since the last sync, applied to the ledger."""
        cursor = str(current.provenance.cursor)
        async with SimproClient(self.simpro, transport=self._transport) as client:
            try:
                synced = await sync_changes(
                    client, ledger, cursor, InvoiceFold(self.invoice_filter)
                )
            finally:
                self.telemetry.record_requests(client.stats.by_status)
        report = synced.as_json()
        provenance = replace(
            current.provenance, cursor=synced.cursor, ledger_version=synced.counts.version
        )
        # The full scan's report stays beside the sync's own.
        details = {**current.report, "lastSync": report}
        return _Computed(synced.counts.metric_values(), provenance, details, report)

    async def _full(self, observer: ScanObserver | None) -> _Computed:
        """A full scan, and the ledger rebuilt from it."""
        journal_from = await self._ledger_version()
        report, fold = await self._scan(observer)
        values = invoice_metric_values(
            distinct=report.count, count=report.invoices, total=report.revenue_cents
        )
        scanned = report.as_json()
        details = {key: value for key, value in scanned.items() if key != "cursor"}
        drift = await self._drift(report.count)
        if drift:
            details["drift"] = drift
            log.warning(
                "Full reconciliation: the scan found %+d customers against what webhooks and "
                "incremental syncs had kept (changes they missed, e.g. deletions); corrected",
                drift,
            )
        rebuilt = await self._rebuild_ledger(fold, journal_from)
        del fold  # the scan's per-invoice state can be large; the ledger holds it now
        provenance = Provenance(invoice_filter=self.invoice_filter.describe(), cursor=report.cursor)
        if rebuilt is not None:
            # The scan plus every webhook event applied while it ran.
            values = rebuilt.counts.metric_values()
            provenance = replace(
                provenance, ledger_version=rebuilt.counts.version, ledger_format=LEDGER_FORMAT
            )
        provenance = replace(provenance, full_scan_at=self._clock())
        # The scan's own `cursor` stays in the run's report even when Simpro gave none.
        run_report = {**scanned, **details, **provenance.as_json()}
        return _Computed(values, provenance, details, run_report)

    async def _drift(self, scanned: int) -> int:
        """How far the kept-current count had drifted from a full scan's (0: not known)."""
        if self.ledger is None:
            return 0
        try:
            previous = await self.store.read(CUSTOMERS)
            if previous is None or not self.can_sync(previous):
                return 0  # the ledger was never rebuilt: nothing was kept current
            kept = await self.ledger.counts()
        except (RedisError, OSError, StoreError):
            return 0
        return scanned - kept.customers

    async def _scan(self, observer: ScanObserver | None) -> tuple[ScanReport, InvoiceFold]:
        async with SimproClient(self.simpro, transport=self._transport) as client:
            try:
                return await scan_invoices(
                    client, observer=observer, invoice_filter=self.invoice_filter
                )
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
        self, fold: InvoiceFold, journal_from: int | None
    ) -> LedgerRebuild | None:
        """Replace the per-invoice state webhooks update; None when Redis cannot hold it."""
        if self.ledger is None or journal_from is None:
            return None
        try:
            return await self.ledger.rebuild(fold.counted(), journal_from=journal_from)
        except (RedisError, OSError, StoreError) as exc:
            # Includes a journal trimmed past the scan's start: the next refresh rebuilds.
            log.warning("Invoice ledger not rebuilt (%s): publishing the scan's count", exc)
            return None

    async def _write_statuses(
        self,
        group: str,
        status: RefreshStatus,
        reports: dict[str, dict[str, Any]] | None = None,
        **changes: Any,
    ) -> None:
        """Record the refresh in the status of every metric of the group (each one's
        `GET /api/simpro/{metric}/refresh` shows it), with each metric's own report
        when given; `status` is the group's own."""
        for name in group_members(group):
            own = replace(
                status
                if name == group
                else await self.store.read_status(name) or RefreshStatus(name),
                **changes,
            )
            if reports is not None:
                own = replace(own, last_report=reports[name])
            await self.store.write_status(own)

    async def _failed(
        self,
        metric: str,
        status: RefreshStatus,
        started: float,
        exc: Exception,
        in_history: bool,
    ) -> None:
        finished = self._clock()
        self.telemetry.refresh_duration.labels(metric, "error").observe(finished - started)
        await self._write_statuses(
            metric,
            status,
            None,
            last_started_at=started,
            last_finished_at=finished,
            last_error=str(exc),
            last_error_at=finished,
        )
        if in_history:
            await self.store.push_history(
                {"metric": metric, "finishedAt": finished, "ok": False, "error": str(exc)}
            )
        log.error("Refresh of %s failed, the previous value is kept: %s", metric, exc)


def _reported_value(metric: str, stored: int) -> dict[str, Any]:
    """The value as refresh reports show it: `count`, or `total` as a decimal string."""
    if METRICS[metric].decimals:
        return {"total": format_value(metric, stored)}
    return {"count": stored}
