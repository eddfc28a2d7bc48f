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

from fastapi import APIRouter, Path, Query, Request, Response, Security
from starlette.convertors import StringConvertor, register_url_convertor

from simpro_counter.contract import (
    InitAnswer,
    InvalidRequest,
    MetricAnswer,
    RefreshedAnswer,
    RefreshRefused,
    RefreshStarted,
    Refusal,
    StatusAnswer,
)
from simpro_counter.errors import RefreshRunningError, SimproCounterError
from simpro_counter.metrics import METRICS, refresh_groups
from simpro_counter.refresh import CUSTOMERS, RefreshMode
from simpro_counter.store.values import MetricValue, RefreshStatus
from simpro_counter.web.auth import admin_denied, details_denied
from simpro_counter.web.http import (
    ADMIN_BEARER,
    CACHE_CONTROL_HEADER,
    ETAG_HEADER,
    IF_NONE_MATCH,
    NO_STORE_HEADER,
    NOT_MODIFIED_RESPONSE,
    RETRY_AFTER_HEADER,
    THROTTLED_RESPONSE,
    iso,
    json_response,
    runtime_of,
    unauthorized_response,
)
from simpro_counter.web.reads import value_fields
from simpro_counter.web.runtime import Runtime

router = APIRouter()
log = logging.getLogger("simpro_counter")


class MetricSegment(StringConvertor):
    """A path segment that can name a metric: any but the concrete paths beside it.

    Without it `/api/simpro/{metric}` would also take `GET /api/simpro/webhooks` (a 404,
    "unknown metric") where the path answers POST only and a 405 is due. Unknown names are
    still routed here, for the 404 that names the metrics there are.
    """

    regex = "(?!webhooks$)[^/]+"


register_url_convertor("metric", MetricSegment())
# Shown as `/api/simpro/{metric}` in the OpenAPI document (the convertor is not).
METRIC = "/api/simpro/{metric:metric}"

PUBLIC_REFRESH_ERROR = (
    "The last refresh failed; the previous value is kept. The details are in the "
    "service's log, or ask with 'Authorization: Bearer <ADMIN_TOKEN>'"
)

MetricPath = Annotated[
    str,
    Path(
        description="One of: " + ", ".join(METRICS),
        examples=list(METRICS),
        # Documented as the enum it is; validated by the handlers, whose 404 names the
        # metrics there are (FastAPI's own check would answer 422).
        json_schema_extra={"enum": list(METRICS)},
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
    METRIC,
    summary="The current value of a metric, from the cache",
    responses={
        200: {
            "model": MetricAnswer,
            "description": "`count` (or `total` and `currency` for revenue) is null while "
            "the first value is computed",
            "headers": {
                "ETag": ETAG_HEADER,
                "Cache-Control": CACHE_CONTROL_HEADER,
                "Retry-After": RETRY_AFTER_HEADER,
            },
        },
        304: NOT_MODIFIED_RESPONSE,
        404: {"model": Refusal, "description": "No such metric"},
        422: {"model": InvalidRequest, "description": "A parameter is not valid"},
    },
    openapi_extra={"parameters": [IF_NONE_MATCH]},
)
# HEAD beside GET (answered by the fast path for the known metrics), so a 405's `Allow`
# names it; a route of its own, as one route with both would repeat the operation ID.
@router.head(METRIC, include_in_schema=False)
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
    f"{METRIC}/refresh",
    summary="Run a refresh now (needs Authorization: Bearer <ADMIN_TOKEN>)",
    # Declares the bearer scheme in the document; the check itself is `admin_denied`.
    dependencies=[Security(ADMIN_BEARER)],
    responses={
        200: {"model": RefreshedAnswer, "description": "The refresh finished"},
        202: {
            "model": RefreshStarted,
            "description": "`background=true`: started, the refresh runs behind",
        },
        401: unauthorized_response("The bearer token is missing or wrong"),
        403: {
            "model": Refusal,
            "description": "ADMIN_TOKEN is not set on the server: refreshing is disabled",
        },
        404: {"model": Refusal, "description": "No such metric"},
        422: {"model": InvalidRequest, "description": "A parameter is not valid"},
        409: {"model": RefreshRefused, "description": "A refresh is already running"},
        429: THROTTLED_RESPONSE,
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
    f"{METRIC}/refresh",
    summary="Refresh status and cache information of a metric",
    responses={
        200: {
            "model": StatusAnswer,
            "description": "`lastError` is the error itself only with "
            "`Authorization: Bearer <ADMIN_TOKEN>`; without it, a generic sentence",
            "headers": {"Cache-Control": NO_STORE_HEADER},
        },
        401: unauthorized_response("A wrong bearer token was sent"),
        404: {"model": Refusal, "description": "No such metric"},
        422: {"model": InvalidRequest, "description": "A parameter is not valid"},
        429: THROTTLED_RESPONSE,
    },
)
async def get_refresh_status(request: Request, metric: MetricPath) -> Response:
    missing = unknown_metric(metric)
    if missing is not None:
        return missing
    runtime = runtime_of(request)
    details, refused = details_denied(request, runtime.settings)
    if refused is not None:
        return refused
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
        "lastError": _last_error(status, details=details),
        "lastErrorAt": iso(status.last_error_at) if status and status.last_error_at else None,
        "lastSuccessAt": (
            iso(status.last_success_at) if status and status.last_success_at else None
        ),
        "lastRefresh": status.last_report if status else {},
    }
    return json_response(body, headers={"Cache-Control": "no-store"})


def _last_error(status: RefreshStatus | None, *, details: bool) -> str | None:
    """The last refresh's error; for the public only that there was one, since Simpro's
    and Redis's error text can name hosts, paths and request details."""
    if status is None or status.last_error is None:
        return None
    return status.last_error if details else PUBLIC_REFRESH_ERROR


@router.get(
    "/api/init",
    summary="Populate the cache if it is empty",
    responses={200: {"model": InitAnswer, "headers": {"Cache-Control": NO_STORE_HEADER}}},
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
