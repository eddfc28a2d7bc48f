"""The counters: the original's contract for `customers`, and the same for every metric.

`GET /api/simpro/{metric}`, `POST|GET /api/simpro/{metric}/refresh` and `GET /api/init`
keep the original's fields for `customers`; the other metrics answer the same way, with
`total` and `currency` in place of `count` for money. The growth history lives in
`history.py`.

The answers are written by hand (the read path is measured in microseconds); their shapes
are documented by the models of `simpro_counter.contract`, which `check` validates with.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from simpro_counter.contract import (
    InitAnswer,
    MetricAnswer,
    RefreshedAnswer,
    RefreshRefused,
    RefreshStarted,
    StatusAnswer,
)
from simpro_counter.errors import RefreshRunningError, SimproCounterError
from simpro_counter.metrics import METRICS, refresh_groups
from simpro_counter.refresh import CUSTOMERS, RefreshMode
from simpro_counter.store.values import MetricValue
from simpro_counter.web.auth import admin_denied
from simpro_counter.web.http import iso, json_response, runtime_of
from simpro_counter.web.reads import value_fields
from simpro_counter.web.runtime import Runtime

router = APIRouter()
log = logging.getLogger("simpro_counter")

MetricPath = Annotated[
    str,
    Path(
        description="One of: " + ", ".join(METRICS),
        examples=list(METRICS),
    ),
]


def unknown_metric(metric: str) -> Response | None:
    """A 404 naming the metrics there are, or None when `metric` is one of them."""
    if metric in METRICS:
        return None
    return json_response(
        {
            "success": False,
            "error": f"Unknown metric {metric[:60]!r}; known: {', '.join(METRICS)}",
        },
        status=404,
    )


@router.get(
    "/api/simpro/{metric}",
    summary="The current value of a metric, from the cache",
    responses={
        200: {
            "model": MetricAnswer,
            "description": "`count` (or `total` and `currency` for revenue) is null while "
            "the first value is computed",
        },
        404: {"description": "No such metric"},
    },
)
async def get_metric(request: Request, metric: MetricPath) -> Response:
    # Normally answered by the ASGI fast path (fastpath.py) before routing; same answer.
    missing = unknown_metric(metric)
    if missing is not None:
        return missing
    answer = await runtime_of(request).reads.read(
        metric, request.headers.get("if-none-match", "").encode() or None
    )
    return Response(
        answer.body,
        status_code=answer.status,
        headers={
            k.decode(): v.decode()
            for k, v in answer.headers
            if k not in (b"content-type", b"content-length")
        },
        media_type="application/json",
    )


@router.post(
    "/api/simpro/{metric}/refresh",
    summary="Run a refresh now (needs Authorization: Bearer <ADMIN_TOKEN>)",
    responses={
        200: {"model": RefreshedAnswer, "description": "The refresh finished"},
        202: {"model": RefreshStarted, "description": "Started in the background"},
        404: {"description": "No such metric"},
        409: {"model": RefreshRefused, "description": "A refresh is already running"},
        502: {"model": RefreshRefused, "description": "Simpro failed; the value is kept"},
    },
)
async def post_refresh(
    request: Request,
    metric: MetricPath,
    background: bool = Query(False, description="Answer 202 at once and refresh behind"),
    mode: Annotated[
        RefreshMode,
        Query(
            description="`full`: scan every invoice; `incremental`: only what changed since "
            "the last sync (a full scan when there is no cursor yet). Customers, invoices "
            "and revenue are refreshed together; jobs and quotes cost one request each."
        ),
    ] = "full",
) -> Response:
    missing = unknown_metric(metric)
    if missing is not None:
        return missing
    runtime = runtime_of(request)
    denied = admin_denied(request, runtime.settings)
    if denied is not None:
        return denied
    storage = runtime.store.storage
    if await runtime.refresher.is_refreshing(metric):
        return _already_running(storage)
    if background:
        runtime.refresher.start_background(metric, mode=mode)
        return json_response(
            {
                "success": True,
                "isRefreshing": True,
                "message": "Refresh started",
                "storage": storage,
            },
            status=202,
        )
    try:
        value = await runtime.refresher.refresh(metric, mode=mode)
    except RefreshRunningError:
        return _already_running(storage)
    except SimproCounterError as exc:
        previous = await runtime.store.read(metric)
        return json_response(
            {
                "success": False,
                "error": str(exc),
                **value_fields(metric, previous, runtime.settings.currency),
                "storage": runtime.store.storage,
            },
            status=502,
        )
    return json_response(
        {"success": True, **_refreshed(runtime, value), "storage": runtime.store.storage}
    )


def _refreshed(runtime: Runtime, value: MetricValue) -> dict[str, Any]:
    details = value.details
    # What this refresh cost: an incremental sync's own report (a value it moved keeps
    # the full scan's report beside it), else the full scan's or the count's.
    sync = details.get("lastSync")
    cost = sync if isinstance(sync, dict) else details
    return {
        **value_fields(value.metric, value, runtime.settings.currency),
        "totalInvoices": details.get("totalInvoices"),
        "duration": cost.get("duration"),
        "ttl": value.ttl,
        "nextRefresh": iso(value.expires_at()),
        "pages": None if sync else details.get("pages"),
        "requests": cost.get("requests"),
        "retries": cost.get("retries"),
        "lastSync": sync,
    }


def _already_running(storage: str) -> Response:
    return json_response(
        {
            "success": False,
            "isRefreshing": True,
            "error": "A refresh is already running",
            "storage": storage,
        },
        status=409,
    )


@router.get(
    "/api/simpro/{metric}/refresh",
    summary="Refresh status and cache information of a metric",
    responses={200: {"model": StatusAnswer}, 404: {"description": "No such metric"}},
)
async def get_refresh_status(request: Request, metric: MetricPath) -> Response:
    missing = unknown_metric(metric)
    if missing is not None:
        return missing
    runtime = runtime_of(request)
    value = await runtime.store.read(metric)
    status = await runtime.store.read_status(metric)
    now = time.time()
    body: dict[str, Any] = {
        **value_fields(metric, value, runtime.settings.currency),
        "lastUpdated": iso(value.computed_at) if value else None,
        "ttl": max(0, int(value.expires_at() - now)) if value else 0,
        "nextRefresh": iso(value.expires_at()) if value else None,
        "isRefreshing": await runtime.refresher.is_refreshing(metric),
        "storage": runtime.store.storage,
        "stale": value.is_stale(now) if value else None,
        "lastError": status.last_error if status else None,
        "lastErrorAt": iso(status.last_error_at) if status and status.last_error_at else None,
        "lastSuccessAt": (
            iso(status.last_success_at) if status and status.last_success_at else None
        ),
        "lastRefresh": status.last_report if status else {},
    }
    return json_response(body, headers={"Cache-Control": "no-store"})


@router.get(
    "/api/init", summary="Populate the cache if it is empty", responses={200: {"model": InitAnswer}}
)
async def get_init(request: Request) -> Response:
    runtime = runtime_of(request)
    value = await runtime.store.read(CUSTOMERS)
    started = False
    # A public route: after failed refreshes it waits out their backoff, as reads do.
    if value is None:
        started = runtime.refresher.start_for_read(CUSTOMERS)
    for group in refresh_groups():  # jobs and quotes: one request each
        if group != CUSTOMERS and await runtime.store.read(group) is None:
            runtime.refresher.start_for_read(group)
    if value is None:
        log.info("Init: no value cached yet; refresh started")
    else:
        log.info("Init: %s customers already cached", f"{value.value:,}")
    return json_response(
        {
            "success": True,
            "message": "Initialization completed",
            "timestamp": iso(time.time()),
            "cached": value is not None,
            "refreshStarted": started,
        },
        headers={"Cache-Control": "no-store"},
    )
