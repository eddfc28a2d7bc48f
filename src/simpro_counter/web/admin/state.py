"""What the dashboard shows, as one JSON document built from the store and the refresher."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from simpro_counter.metrics import METRICS as REGISTRY
from simpro_counter.metrics import MetricDefinition, format_value, refresh_group
from simpro_counter.store.values import MetricValue, RefreshStatus
from simpro_counter.web.http import iso
from simpro_counter.web.runtime import Runtime


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    description: str
    unit: str
    """What the value counts ("customers", "jobs" …); money is in the value's currency."""
    money: bool
    """A sum of amounts (revenue): shown with two decimals and its currency."""
    group: str
    """The metric whose refresh computes this one (customers for invoices and revenue)."""


# Labels read better than the registry's names for these; any other metric is shown
# under its name, capitalised.
_LABELS = {"customers": "Unique customers"}


def _info(definition: MetricDefinition) -> MetricInfo:
    return MetricInfo(
        name=definition.name,
        label=_LABELS.get(definition.name, definition.name.capitalize()),
        description=definition.description,
        unit=definition.unit,
        money=definition.kind == "sum",
        group=refresh_group(definition.name),
    )


# One card per metric of the registry, in its order: a metric added there (with a
# refresher that computes it) gets a card and a working "Refresh now" by itself.
METRICS = tuple(_info(definition) for definition in REGISTRY.values())
METRIC_NAMES = frozenset(info.name for info in METRICS)

# The fields of a history entry the dashboard shows (the scan cursor, for one, is not).
_HISTORY_FIELDS = (
    "mode",
    "count",
    "totalInvoices",
    "duration",
    "pages",
    "requests",
    "retries",
    "error",
)


async def dashboard_state(runtime: Runtime) -> dict[str, Any]:
    """Everything on the dashboard; no secret is part of it."""
    now = time.time()
    store = runtime.store
    history = await store.history()
    # Read once per refresh group, so that the cards of one group agree with each other.
    groups = {
        group: _Group(
            refreshing=await runtime.refresher.is_refreshing(group),
            status=await store.read_status(group),
        )
        for group in dict.fromkeys(info.group for info in METRICS)
    }
    return {
        "now": iso(now),
        "storage": store.storage,
        "checkInterval": runtime.settings.refresh_check_interval,
        "redis": {
            "location": store.redis_location,
            "healthy": store.redis_healthy,
            "lastError": store.last_redis_error,
        },
        "metrics": [await _metric(runtime, info, groups, history, now) for info in METRICS],
        "history": [_history_row(entry) for entry in history],
    }


@dataclass(frozen=True)
class _Group:
    refreshing: bool
    """A refresh of the group runs, here or on another replica."""
    status: RefreshStatus | None
    """The group's own status: it knows when a running refresh started (the other
    members' statuses are written when it finishes)."""


async def _metric(
    runtime: Runtime,
    info: MetricInfo,
    groups: dict[str, _Group],
    history: list[dict[str, Any]],
    now: float,
) -> dict[str, Any]:
    value = await runtime.store.read(info.name)
    group = groups[info.group]
    status = group.status if info.group == info.name else await runtime.store.read_status(info.name)
    refreshing = group.refreshing
    currency = _currency(runtime, info, value)
    return {
        "metric": info.name,
        "label": info.label,
        "description": info.description,
        "state": _state(value, refreshing, now),
        # The stored integer: cents for money. `display` is the exact decimal text.
        "value": value.value if value else None,
        "display": format_value(info.name, value.value) if value else None,
        "unit": currency or info.unit,
        "currency": currency,
        "refreshGroup": info.group,
        "computedAt": iso(value.computed_at) if value else None,
        "age": int(value.age(now)) if value else None,
        "stale": value.is_stale(now) if value else None,
        "ttl": value.ttl if value else runtime.settings.customer_count_ttl,
        # When the value turns stale; the scheduler starts a refresh at its next check.
        "nextRefresh": iso(value.expires_at()) if value else None,
        "isRefreshing": refreshing,
        "refreshingSince": _running_since(group.status) if refreshing else None,
        "lastRefresh": _last_refresh(status),
        "lastError": _last_error(info.group, status, history),
        "storage": runtime.store.storage,
    }


def _currency(runtime: Runtime, info: MetricInfo, value: MetricValue | None) -> str | None:
    """The currency of a money metric (the one its value was computed in); None otherwise."""
    if not info.money:
        return None
    if value is not None and "currency" in value.report:
        return str(value.report["currency"])
    return runtime.settings.currency


def _state(value: MetricValue | None, refreshing: bool, now: float) -> str:
    if refreshing:
        return "refreshing"
    if value is None:
        return "empty"
    return "stale" if value.is_stale(now) else "fresh"


def _running_since(status: RefreshStatus | None) -> str | None:
    # Another replica's refresh is visible too: it writes the shared status when it starts.
    if status is None or status.last_started_at is None:
        return None
    if status.last_finished_at is not None and status.last_finished_at >= status.last_started_at:
        return None
    return iso(status.last_started_at)


def _last_refresh(status: RefreshStatus | None) -> dict[str, Any] | None:
    if status is None or status.last_finished_at is None:
        return None
    # A failure writes its error with the finish time; a success clears it.
    ok = status.last_error is None
    report = status.last_report if ok else {}
    started = status.last_started_at
    return {
        "ok": ok,
        "startedAt": iso(started) if started is not None else None,
        "finishedAt": iso(status.last_finished_at),
        "duration": report.get("duration")
        if ok
        else (round(status.last_finished_at - started, 3) if started is not None else None),
        "totalInvoices": report.get("totalInvoices"),
        "pages": report.get("pages"),
        "requests": report.get("requests"),
        "retries": report.get("retries"),
        "error": status.last_error,
    }


def _last_error(
    group: str, status: RefreshStatus | None, history: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The current error, else the latest failure of the metric's group in the history."""
    if status is not None and status.last_error is not None:
        at = status.last_error_at
        return {"message": status.last_error, "at": iso(at) if at else None, "current": True}
    for entry in history:  # newest first
        if entry.get("metric") == group and not entry.get("ok", True):
            at = entry.get("finishedAt")
            return {
                "message": str(entry.get("error") or "unknown error"),
                "at": iso(at) if isinstance(at, int | float) else None,
                "current": False,
            }
    return None


def _history_row(entry: dict[str, Any]) -> dict[str, Any]:
    finished = entry.get("finishedAt")
    return {
        "metric": entry.get("metric"),
        "finishedAt": iso(finished) if isinstance(finished, int | float) else None,
        "ok": bool(entry.get("ok")),
        **{name: entry.get(name) for name in _HISTORY_FIELDS},
    }
