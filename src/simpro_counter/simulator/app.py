"""Assembly of the Starlette application for one simulated build."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import SimproApi
from .auth import token_endpoint
from .control import control_routes
from .gate import GateParts, SimproGate
from .webhook_api import webhook_routes

if TYPE_CHECKING:
    from .simulator import Simulator


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods answer in Simpro's error shape, not plain text.
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal Server Error"
    return JSONResponse({"errors": [{"message": detail}]}, status_code=status)


def build_app(simulator: Simulator) -> Starlette:
    api = SimproApi(simulator.dataset, simulator.config, simulator.clock)
    routes = [
        # Before the generic GET route, which would answer setup/webhooks/ with 404.
        *webhook_routes(
            simulator.webhooks,
            simulator.config.company_ids,
            simulator.config.unknown_query_fields,
        ),
        Route("/api/v1.0/{rest:path}", api.handle, methods=["GET"]),
        Route("/oauth2/token", token_endpoint(simulator.auth), methods=["POST"]),
        *control_routes(simulator.dataset, simulator.faults, simulator.stats),
    ]
    parts = GateParts(
        stats=simulator.stats,
        hooks=simulator.hooks,
        limiter=simulator.limiter,
        latency=simulator.latency,
        faults=simulator.faults,
        authenticator=simulator.auth,
        slow_seconds=simulator.config.slow_seconds,
        clock=simulator.clock,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Under uvicorn, webhook deliveries run in the background on its loop. The
        # in-process transport sends no lifespan events: there, use webhooks.flush().
        await simulator.webhooks.start()
        try:
            yield
        finally:
            await simulator.webhooks.stop()

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SimproGate, parts=parts)],
        exception_handlers={HTTPException: _http_error},
    )
