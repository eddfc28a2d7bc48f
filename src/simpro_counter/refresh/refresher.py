"""A refresh: one computation of a metric's group under its lock, published only when complete.

Only one refresh of a group runs at a time across every replica (:class:`RefreshLock`).
Every refresh takes a fencing token per metric before it computes, and the store refuses
a value whose token is older than the stored one, so a slow refresh that lost its lock
cannot overwrite a newer value. Which computation runs is the strategy's (count,
incremental or full, :mod:`.strategies`); what it leaves in the statuses and the history
is the recorder's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from simpro_counter.errors import RefreshRunningError, SimproCounterError, StoreError
from simpro_counter.keys import LOCK_TTL_SECONDS
from simpro_counter.metrics import (
    INVOICE_GROUP,
    METRICS,
    InvoiceFilter,
    display_value,
    group_members,
    refresh_group,
)
from simpro_counter.publishing import built_on_ledger, can_sync, publish_from_ledger
from simpro_counter.scan import ScanObserver
from simpro_counter.simpro import SimproConfig
from simpro_counter.store.base import Store
from simpro_counter.store.ledger import InvoiceLedgerStore
from simpro_counter.store.tasks import stop_task
from simpro_counter.store.values import MetricValue
from simpro_counter.telemetry import Telemetry

from .backoff import TriggerBackoff
from .lock import RefreshLock
from .recorder import RefreshMode, RefreshRecorder
from .strategies import (
    Computed,
    CountStrategy,
    FullStrategy,
    IncrementalStrategy,
    SimproSource,
    Strategy,
)

log = logging.getLogger("simpro_counter.refresh")

CUSTOMERS = INVOICE_GROUP


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
        trigger_backoff: TriggerBackoff | None = None,
    ) -> None:
        self.store = store
        self.simpro = simpro
        self.ttl = ttl
        self.telemetry = telemetry or Telemetry()
        self._source = SimproSource(simpro, self.telemetry, transport)
        self.ledger = ledger
        self._clock = clock
        self._lock_ttl = lock_ttl
        self._recorder = RefreshRecorder(store, self.telemetry, clock)
        self.invoice_filter = invoice_filter or InvoiceFilter()
        self.currency = currency
        self._running: dict[str, asyncio.Task[dict[str, MetricValue]]] = {}
        self._background: set[asyncio.Task[None]] = set()
        # When reads may start a refresh again after failures (`start_for_read`).
        self.trigger_backoff = trigger_backoff or TriggerBackoff()

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

    def start_for_read(self, metric: str) -> bool:
        """:meth:`start_background` for a read that found no value or a stale one, unless
        refreshes of the group failed lately (:class:`TriggerBackoff`): anonymous reads
        must not turn a Simpro that refuses every request into one request each."""
        if not self.trigger_backoff.due(refresh_group(metric)):
            return False
        return self.start_background(metric)

    async def aclose(self) -> None:
        """Cancel running refreshes (their locks are released) and wait for them."""
        for task in [*self._running.values(), *self._background]:
            with contextlib.suppress(Exception):  # its failure was logged and recorded
                await stop_task(task)

    async def _locked_refresh(
        self, group: str, observer: ScanObserver | None, mode: RefreshMode, in_history: bool
    ) -> dict[str, MetricValue]:
        try:
            async with RefreshLock(self.store, group, ttl=self._lock_ttl):
                published = await self._compute_and_publish(group, observer, mode, in_history)
        except RefreshRunningError:
            raise  # another replica's refresh: no outcome of this one
        except SimproCounterError as exc:  # StoreError included
            failures = self.trigger_backoff.failed(group)
            log.info(
                "Refresh of %s failed %d time(s) in a row (%s); reads wait %.0f s to retry",
                group,
                failures.count,
                type(exc).__name__,
                failures.wait,
            )
            raise
        self.trigger_backoff.succeeded(group)
        return published

    async def _compute_and_publish(
        self, group: str, observer: ScanObserver | None, mode: RefreshMode, in_history: bool
    ) -> dict[str, MetricValue]:
        run = await self._recorder.start(group)
        strategy = await self._strategy(group, observer, mode)
        log.info("Refresh of %s started (%s)", group, strategy.mode)
        fences = {name: await self.store.next_fence(name) for name in group_members(group)}
        try:
            computed = await strategy.compute()
        except SimproCounterError as exc:  # StoreError included: the ledger failed
            await self._recorder.failed(run, exc, in_history=in_history)
            raise
        published = await self._publish(computed, fences)
        if group == INVOICE_GROUP:
            await self._catch_up_with_ledger(published)
        finished = await self._recorder.succeeded(
            run, strategy.mode, computed.values, computed.run_report, in_history=in_history
        )
        log.info(
            "Refresh done (%s): %s in %.1f s (%s requests)",
            strategy.mode,
            ", ".join(f"{display_value(name, v.value)} {name}" for name, v in published.items()),
            finished - run.started,
            computed.run_report.get("requests"),
        )
        return published

    async def _strategy(
        self, group: str, observer: ScanObserver | None, mode: RefreshMode
    ) -> Strategy:
        """The computation this refresh runs: a count for a `Result-Total` metric, an
        incremental sync only when the stored value can take one, else a full scan."""
        if group != INVOICE_GROUP:
            return CountStrategy(self._source, group)
        if mode == "incremental" and self.ledger is not None and self.store.storage == "redis":
            # (The ledger lives in Redis: a value kept in memory has no ledger behind it.)
            current = await self.store.read(group)
            if current is not None and self.can_sync(current):
                return IncrementalStrategy(self._source, self.ledger, current, self.invoice_filter)
        return FullStrategy(
            self._source, self.store, self.ledger, self.invoice_filter, self._clock, observer
        )

    async def _publish(self, computed: Computed, fences: dict[str, int]) -> dict[str, MetricValue]:
        """Publish each metric's value under its fence; a newer stored value is kept."""
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
                report=self._report_of(name, computed.report),
            )
            if await self.store.publish(value):
                published[name] = value
            else:
                log.warning("Refresh of %s finished but a newer value was already stored", name)
                published[name] = await self.store.read(name) or value
        return published

    async def _catch_up_with_ledger(self, published: dict[str, MetricValue]) -> None:
        """Publish again if webhook events reached the ledger after this refresh read its
        counts (between the ledger swap, or the sync, and the publish)."""
        if self.ledger is None or not all(self.built_on_ledger(v) for v in published.values()):
            return
        try:
            await publish_from_ledger(self.store, self.ledger, self.invoice_filter)
        except StoreError as exc:
            log.warning("Could not bring the values up to the ledger (%s); next event will", exc)
            return
        for name in published:
            published[name] = await self.store.read(name) or published[name]

    def _report_of(self, metric: str, report: dict[str, Any]) -> dict[str, Any]:
        if METRICS[metric].kind == "sum":
            return {**report, "currency": self.currency}
        return report
