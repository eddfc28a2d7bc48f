"""The three ways a refresh computes its values, one class each.

- :class:`CountStrategy`: a metric Simpro reports in `Result-Total` (jobs, quotes), one
  request with `pageSize=1`;
- :class:`IncrementalStrategy`: the invoices changed since the last sync, applied to the
  ledger; the invoice metrics are then the ledger's counts;
- :class:`FullStrategy`: every invoice scanned and proven complete, the ledger rebuilt
  from the scan, and the drift of the kept-current count reported.

Each returns a :class:`Computed`; none publishes (the refresher does, under its fences).

What a scan or a sync proves the build ignores (ID filters, If-Modified-Since: see
:mod:`simpro_counter.build_quirks`) is in its report (`buildIgnores`, `notes`) every
time, and logged as a warning once per process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx

from simpro_counter.build_quirks import announce
from simpro_counter.errors import StoreError
from simpro_counter.metrics import (
    INVOICE_GROUP,
    METRICS,
    InvoiceFilter,
    InvoiceFold,
    invoice_metric_values,
)
from simpro_counter.publishing import can_sync
from simpro_counter.scan import ScanObserver, ScanReport, scan_invoices
from simpro_counter.simpro import SimproClient, SimproConfig
from simpro_counter.store.base import Store
from simpro_counter.store.ledger import LEDGER_FORMAT, InvoiceLedgerStore, LedgerRebuild
from simpro_counter.store.values import MetricValue, Provenance
from simpro_counter.sync import sync_changes
from simpro_counter.telemetry import Telemetry

from .recorder import RefreshMode

log = logging.getLogger("simpro_counter.refresh")


@dataclass(frozen=True)
class Computed:
    """What one refresh found, before it is published."""

    values: dict[str, int]
    """The value of each metric of the group."""
    provenance: Provenance
    """Where the values come from (stored with each)."""
    report: dict[str, Any]
    """What is shown with each value (its details, beside the provenance)."""
    run_report: dict[str, Any]
    """What this refresh did and cost, for the status and the history."""


class Strategy(Protocol):
    """One way to compute a group's values."""

    @property
    def mode(self) -> RefreshMode:
        """How the refresh is reported (`full` also for a count: there is nothing less)."""
        ...

    async def compute(self) -> Computed: ...


@dataclass(frozen=True)
class SimproSource:
    """How strategies reach Simpro: one client per refresh, its requests counted."""

    config: SimproConfig
    telemetry: Telemetry
    transport: httpx.AsyncBaseTransport | None = None

    @asynccontextmanager
    async def client(self) -> AsyncIterator[SimproClient]:
        async with SimproClient(self.config, transport=self.transport) as client:
            try:
                yield client
            finally:
                self.telemetry.record_requests(client.stats.by_status)


@dataclass(frozen=True)
class CountStrategy:
    """A metric Simpro reports in `Result-Total`: one request with `pageSize=1`."""

    source: SimproSource
    metric: str
    mode: RefreshMode = "full"

    async def compute(self) -> Computed:
        started = time.monotonic()
        async with self.source.client() as client:
            count = await client.count(METRICS[self.metric].resource)
            report = {
                "requests": client.stats.requests,
                "retries": client.stats.retries,
                "duration": round(time.monotonic() - started, 3),
            }
        return Computed({self.metric: count}, Provenance(), report, report)


@dataclass(frozen=True)
class IncrementalStrategy:
    """What changed since the last sync, applied to the ledger the current value is on."""

    source: SimproSource
    ledger: InvoiceLedgerStore
    current: MetricValue
    """The group's value now: it has a cursor and is built on the ledger (`can_sync`)."""
    invoice_filter: InvoiceFilter
    mode: RefreshMode = "incremental"

    async def compute(self) -> Computed:
        cursor = self.current.provenance.cursor
        if not cursor:
            raise ValueError("an incremental sync starts from a value with a cursor")
        async with self.source.client() as client:
            synced = await sync_changes(client, self.ledger, cursor, self.invoice_filter)
        _announce(synced.notes)
        report = synced.as_json()
        provenance = replace(
            self.current.provenance, cursor=synced.cursor, ledger_version=synced.counts.version
        )
        # The full scan's report stays beside the sync's own.
        shown = {**self.current.report, "lastSync": report}
        return Computed(synced.counts.metric_values(), provenance, shown, report)


@dataclass(frozen=True)
class FullStrategy:
    """A full scan, and the ledger rebuilt from it (when there is a ledger that can take
    it: a failed rebuild still publishes the scan's proven counts)."""

    source: SimproSource
    store: Store
    ledger: InvoiceLedgerStore | None
    invoice_filter: InvoiceFilter
    clock: Callable[[], float] = time.time
    observer: ScanObserver | None = None
    mode: RefreshMode = "full"

    async def compute(self) -> Computed:
        journal_from = await self._ledger_version()
        scan, fold = await self._scan()
        _announce(scan.notes)
        values = invoice_metric_values(
            distinct=scan.count, count=scan.invoices, total=scan.revenue_cents
        )
        scanned = scan.as_json()
        shown = {key: value for key, value in scanned.items() if key != "cursor"}
        drift = await self._drift(scan.count)
        if drift:
            shown["drift"] = drift
            log.warning(
                "Full reconciliation: the scan found %+d customers against what webhooks and "
                "incremental syncs had kept (changes they missed, e.g. deletions); corrected",
                drift,
            )
        rebuilt = await self._rebuild_ledger(fold, journal_from)
        del fold  # the scan's per-invoice state can be large; the ledger holds it now
        provenance = Provenance(invoice_filter=self.invoice_filter.describe(), cursor=scan.cursor)
        if rebuilt is not None:
            # The scan plus every webhook event applied while it ran.
            values = rebuilt.counts.metric_values()
            provenance = replace(
                provenance, ledger_version=rebuilt.counts.version, ledger_format=LEDGER_FORMAT
            )
        provenance = replace(provenance, full_scan_at=self.clock())
        # The scan's own `cursor` stays in the run's report even when Simpro gave none.
        run_report = {**scanned, **shown, **provenance.as_json()}
        return Computed(values, provenance, shown, run_report)

    async def _scan(self) -> tuple[ScanReport, InvoiceFold]:
        async with self.source.client() as client:
            return await scan_invoices(
                client, observer=self.observer, invoice_filter=self.invoice_filter
            )

    async def _drift(self, scanned: int) -> int:
        """How far the kept-current count had drifted from a full scan's (0: not known)."""
        if self.ledger is None:
            return 0
        try:
            previous = await self.store.read(INVOICE_GROUP)
            if previous is None or not can_sync(previous, self.invoice_filter):
                return 0  # the ledger was never rebuilt: nothing was kept current
            kept = await self.ledger.counts()
        except StoreError:
            return 0
        return scanned - kept.customers

    async def _ledger_version(self) -> int | None:
        if self.ledger is None:
            return None
        try:
            return await self.ledger.version()
        except StoreError as exc:
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
        except StoreError as exc:
            # Includes a journal trimmed past the scan's start: the next refresh rebuilds.
            log.warning("Invoice ledger not rebuilt (%s): publishing the scan's count", exc)
            return None


def _announce(notes: tuple[str, ...]) -> None:
    """Log what the build was found to ignore, each sentence once per process."""
    for text in notes:
        announce(text, log)
