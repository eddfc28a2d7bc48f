"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from simpro_counter.contract import Health, Readiness
from simpro_counter.metrics import METRICS
from simpro_counter.web.auth import details_denied
from simpro_counter.web.http import (
    NO_STORE_HEADER,
    THROTTLED_RESPONSE,
    json_response,
    runtime_of,
    unauthorized_response,
)

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process answers", responses={200: {"model": Health}})
# HEAD beside GET (answered by the fast path), so a 405's `Allow` names it.
@router.head("/healthz", include_in_schema=False)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: Redis and Simpro reachable",
    responses={
        200: {"model": Readiness, "headers": {"Cache-Control": NO_STORE_HEADER}},
        401: unauthorized_response("A wrong bearer token was sent"),
        429: THROTTLED_RESPONSE,
        503: {
            "model": Readiness,
            "description": "Not ready",
            "headers": {"Cache-Control": NO_STORE_HEADER},
        },
    },
)
async def readyz(request: Request) -> Response:
    """Readiness for anyone; where Redis is and why a part fails only with the token
    (locations, socket paths and upstream error text help an attacker, not a probe)."""
    runtime = runtime_of(request)
    details, refused = details_denied(request, runtime.settings)
    if refused is not None:
        return refused
    redis_ok = await runtime.store.ping()
    simpro_ok, simpro_detail = await runtime.simpro_reachable()
    if details:
        location: str | None = runtime.store.redis_location
        redis_error = None if redis_ok else runtime.store.last_redis_error
    else:
        location, redis_error = None, None if redis_ok else "unavailable"
        simpro_detail = "reachable" if simpro_ok else "unreachable"
    body = {
        "ready": redis_ok and simpro_ok,
        "redis": {
            "ok": redis_ok,
            "location": location,
            "storage": runtime.store.storage,
            "error": redis_error,
        },
        "simpro": {"ok": simpro_ok, "detail": simpro_detail},
    }
    return json_response(
        body, status=200 if body["ready"] else 503, headers={"Cache-Control": "no-store"}
    )


class PrometheusText(Response):
    """The text exposition format, in the version `prometheus_client` writes."""

    media_type = CONTENT_TYPE_LATEST


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PrometheusText,
    responses={200: {"description": "Prometheus text exposition format"}},
)
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    now = time.time()
    for name, definition in METRICS.items():
        value = await runtime.store.read(name)
        if value is not None:
            # Prometheus samples are floats: revenue in currency units, not cents.
            shown = float(definition.from_stored(value.value))
            runtime.telemetry.value.labels(name).set(shown)
            runtime.telemetry.age.labels(name).set(value.age(now))
    return Response(generate_latest(runtime.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
