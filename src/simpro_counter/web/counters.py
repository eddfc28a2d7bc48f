"""The original's public contract: count, refresh, refresh status, init."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from simpro_counter.errors import RefreshRunningError, SimproCounterError
from simpro_counter.refresh import CUSTOMERS, RefreshMode
from simpro_counter.store.values import MetricValue
from simpro_counter.web.auth import admin_denied
from simpro_counter.web.http import iso, json_response, runtime_of

router = APIRouter()
log = logging.getLogger("simpro_counter")


@router.get(
    "/api/simpro/customers",
    summary="The current count of unique customers, from the cache",
    responses={200: {"description": "`count` is null while the first value is computed"}},
)
async def get_customers(request: Request) -> Response:
    # Normally answered by the ASGI fast path (fastpath.py) before routing; same answer.
    answer = await runtime_of(request).reads.customers(
        request.headers.get("if-none-match", "").encode() or None
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
    "/api/simpro/customers/refresh",
    summary="Run a full refresh now (needs Authorization: Bearer <ADMIN_TOKEN>)",
)
async def post_refresh(
    request: Request,
    background: bool = Query(False, description="Answer 202 at once and refresh behind"),
    mode: Annotated[
        RefreshMode,
        Query(
            description="`full`: scan every invoice; `incremental`: only what changed since "
            "the last sync (a full scan when there is no cursor yet)"
        ),
    ] = "full",
) -> Response:
    runtime = runtime_of(request)
    denied = admin_denied(request, runtime.settings)
    if denied is not None:
        return denied
    storage = runtime.store.storage
    if await runtime.refresher.is_refreshing(CUSTOMERS):
        return _already_running(storage)
    if background:
        runtime.refresher.start_background(CUSTOMERS, mode=mode)
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
        value = await runtime.refresher.refresh(CUSTOMERS, mode=mode)
    except RefreshRunningError:
        return _already_running(storage)
    except SimproCounterError as exc:
        previous = await runtime.store.read(CUSTOMERS)
        return json_response(
            {
                "success": False,
                "error": str(exc),
                "count": previous.value if previous else None,
                "storage": runtime.store.storage,
            },
            status=502,
        )
    return json_response({"success": True, **_refreshed(value), "storage": runtime.store.storage})


def _refreshed(value: MetricValue) -> dict[str, Any]:
    details = value.details
    return {
        "count": value.value,
        "totalInvoices": details.get("totalInvoices"),
        "duration": details.get("duration"),
        "ttl": value.ttl,
        "nextRefresh": iso(value.expires_at()),
        "pages": details.get("pages"),
        "requests": details.get("requests"),
        "retries": details.get("retries"),
        "lastSync": details.get("lastSync"),
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


@router.get("/api/simpro/customers/refresh", summary="Refresh status and cache information")
async def get_refresh_status(request: Request) -> Response:
    runtime = runtime_of(request)
    value = await runtime.store.read(CUSTOMERS)
    status = await runtime.store.read_status(CUSTOMERS)
    now = time.time()
    body: dict[str, Any] = {
        "count": value.value if value else None,
        "lastUpdated": iso(value.computed_at) if value else None,
        "ttl": max(0, int(value.expires_at() - now)) if value else 0,
        "nextRefresh": iso(value.expires_at()) if value else None,
        "isRefreshing": await runtime.refresher.is_refreshing(CUSTOMERS),
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


@router.get("/api/init", summary="Populate the cache if it is empty")
async def get_init(request: Request) -> Response:
    runtime = runtime_of(request)
    value = await runtime.store.read(CUSTOMERS)
    started = False
    if value is None:
        started = runtime.refresher.start_background(CUSTOMERS)
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
