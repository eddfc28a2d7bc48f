"""`GET /api/simpro/customers/history`: customer growth per month, quarter or year."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from simpro_counter.contract import HistoryAnswer, HistoryUnavailable, InvalidRequest
from simpro_counter.growth import GrowthHistory, HistoryUnavailableError
from simpro_counter.metrics import Interval, to_csv
from simpro_counter.web.http import (
    CACHE_CONTROL_HEADER,
    ETAG_HEADER,
    IF_NONE_MATCH,
    NO_STORE_HEADER,
    NOT_MODIFIED_RESPONSE,
    RETRY_AFTER_HEADER,
    iso,
    json_response,
    runtime_of,
)
from simpro_counter.web.reads import RETRY_AFTER_SECONDS, etag_matches

router = APIRouter()
log = logging.getLogger("simpro_counter")

_REDIS_DOWN = (
    "The growth history cannot be read from Redis and none was read before; "
    "it will be back with Redis."
)

# The history moves with every invoice of a new customer: short client caching.
_CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=600"


@router.get(
    "/api/simpro/customers/history",
    summary="Customer growth: new customers per period and the running total",
    responses={
        200: {
            "model": HistoryAnswer,
            "description": "`history` oldest first, periods without gaps; with "
            "`format=csv`, the same as `period,new,cumulative` lines",
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "headers": {"ETag": ETAG_HEADER, "Cache-Control": CACHE_CONTROL_HEADER},
        },
        304: NOT_MODIFIED_RESPONSE,
        422: {"model": InvalidRequest, "description": "`interval` or `format` is not valid"},
        503: {
            "model": HistoryUnavailable,
            "description": "The first full scan has not finished (or Redis never answered)",
            "headers": {"Retry-After": RETRY_AFTER_HEADER, "Cache-Control": NO_STORE_HEADER},
        },
    },
    openapi_extra={"parameters": [IF_NONE_MATCH]},
)
async def get_history(
    request: Request,
    interval: Annotated[Interval, Query(description="Period length")] = "month",
    format: Annotated[Literal["json", "csv"], Query(description="`csv` downloads a file")] = "json",
) -> Response:
    try:
        growth = await runtime_of(request).growth_history(interval)
    except HistoryUnavailableError as exc:
        error = str(exc)
        if exc.__cause__ is not None:
            # Redis's own error text names hosts and paths: the log gets it, not the public.
            runtime_of(request).warnings.warning(log, "history", "%s", error)
            error = _REDIS_DOWN
        return json_response(
            {"interval": interval, "history": None, "error": error},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
        )
    etag = f'W/"h{growth.version}-{interval}-{format}"'
    headers = {"ETag": etag, "Cache-Control": _CACHE_CONTROL}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and etag_matches(if_none_match.encode(), etag.encode()):
        return Response(status_code=304, headers=headers)
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="customer-growth-by-{interval}.csv"'
        return Response(to_csv(growth.points), media_type="text/csv", headers=headers)
    return json_response(_body(growth), headers=headers)


def _body(growth: GrowthHistory) -> dict[str, object]:
    return {
        "interval": growth.interval,
        "history": [
            {"period": p.period, "new": p.new, "cumulative": p.cumulative} for p in growth.points
        ],
        "total": growth.points[-1].cumulative if growth.points else 0,
        "undated": growth.undated,
        "lastUpdated": iso(growth.computed_at),
    }
