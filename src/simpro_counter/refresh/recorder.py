"""What a refresh leaves behind besides its values: each metric's status, the refresh
history, and the duration histogram.

A refresh of a group records itself in the status of every metric it publishes (each
one's `GET /api/simpro/{metric}/refresh` shows it) and once in the history, under the
group's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from simpro_counter.metrics import METRICS, format_value, group_members
from simpro_counter.store.base import Store
from simpro_counter.store.values import RefreshStatus
from simpro_counter.telemetry import Telemetry

log = logging.getLogger("simpro_counter.refresh")

RefreshMode = Literal["full", "incremental"]


@dataclass(frozen=True)
class RefreshRun:
    """One refresh being recorded: its group, when it started, the group's status before."""

    group: str
    started: float
    status: RefreshStatus


class RefreshRecorder:
    """Writes the statuses and history entries of refreshes, and observes their duration."""

    def __init__(self, store: Store, telemetry: Telemetry, clock: Callable[[], float]) -> None:
        self._store = store
        self._telemetry = telemetry
        self._clock = clock

    async def start(self, group: str) -> RefreshRun:
        """Record that a refresh of `group` started now (the admin shows it running)."""
        started = self._clock()
        status = await self._store.read_status(group) or RefreshStatus(group)
        await self._store.write_status(replace(status, last_started_at=started))
        return RefreshRun(group, started, status)

    async def succeeded(
        self,
        run: RefreshRun,
        mode: RefreshMode,
        values: Mapping[str, int],
        report: Mapping[str, Any],
        *,
        in_history: bool,
    ) -> float:
        """Record a refresh that computed `values` (one per metric of the group) and
        published them; returns when it finished."""
        finished = self._clock()
        self._telemetry.refresh_duration.labels(run.group, mode).observe(finished - run.started)
        # Each metric's report carries its own value (the scan report's `count` is customers').
        shared = {key: shown for key, shown in report.items() if key != "count"}
        entries = {
            name: {"mode": mode, **shared, **reported_value(name, values[name])}
            for name in group_members(run.group)
        }
        await self._write_statuses(
            run,
            entries,
            last_started_at=run.started,
            last_finished_at=finished,
            last_success_at=finished,
            last_error=None,
            last_error_at=None,
        )
        if in_history:
            await self._store.push_history(
                {"metric": run.group, "finishedAt": finished, "ok": True, **entries[run.group]}
            )
        return finished

    async def failed(self, run: RefreshRun, exc: Exception, *, in_history: bool) -> None:
        """Record a refresh that failed; the values it would have replaced are kept."""
        finished = self._clock()
        self._telemetry.refresh_duration.labels(run.group, "error").observe(finished - run.started)
        await self._write_statuses(
            run,
            None,
            last_started_at=run.started,
            last_finished_at=finished,
            last_error=str(exc),
            last_error_at=finished,
        )
        if in_history:
            await self._store.push_history(
                {"metric": run.group, "finishedAt": finished, "ok": False, "error": str(exc)}
            )
        log.error("Refresh of %s failed, the previous value is kept: %s", run.group, exc)

    async def _write_statuses(
        self, run: RefreshRun, reports: Mapping[str, dict[str, Any]] | None, **changes: Any
    ) -> None:
        """Apply `changes` to the status of every metric of the group, with each metric's
        own report when given; the group's own starts from `run.status`."""
        for name in group_members(run.group):
            before = (
                run.status
                if name == run.group
                else await self._store.read_status(name) or RefreshStatus(name)
            )
            own = replace(before, **changes)
            if reports is not None:
                own = replace(own, last_report=reports[name])
            await self._store.write_status(own)


def reported_value(metric: str, stored: int) -> dict[str, Any]:
    """The value as refresh reports show it: `count`, or `total` as a decimal string."""
    if METRICS[metric].decimals:
        return {"total": format_value(metric, stored)}
    return {"count": stored}
