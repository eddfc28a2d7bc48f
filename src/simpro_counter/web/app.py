"""`create_app(settings)`: the FastAPI application and its lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from simpro_counter.settings import Settings, simpro_config
from simpro_counter.web import admin, counters, history, ops, pages, webhooks
from simpro_counter.web.fastpath import FastReads
from simpro_counter.web.runtime import Runtime


def create_app(
    settings: Settings, *, simpro_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The service. Settings are checked here, so a bad one fails before anything starts."""
    simpro = simpro_config(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings, simpro, transport=simpro_transport)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.aclose()

    # The API docs (/docs, /redoc) with Swagger UI and ReDoc served by the service itself,
    # not from a CDN: they work on a machine without internet and under a strict network
    # policy.
    app = FastAPIOffline(
        static_url="/docs-assets",
        title="simpro-counter",
        summary="Exact, instant counters from a Simpro build",
        version="0.1.0",
        lifespan=lifespan,
        # Answers any operation may get before its handler runs.
        responses={431: {"description": "Request header fields too large"}},
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(405, _method_not_allowed)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_methods=["GET"],
        allow_headers=["If-None-Match"],
        expose_headers=["ETag", "Retry-After"],
        max_age=86400,
    )
    # Added last, so it runs first: the hot reads skip the rest of the stack.
    app.add_middleware(FastReads, cors_origins=settings.cors_origin_list)
    app.include_router(history.router, tags=["counters"])
    app.include_router(counters.router, tags=["counters"])
    app.include_router(ops.router, tags=["operations"])
    app.include_router(pages.router, tags=["pages"])
    app.include_router(admin.router, tags=["admin"])
    app.include_router(webhooks.router, tags=["webhooks"])
    return app


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """A bad query parameter (e.g. `interval=week`) answered in the service's own shape,
    `{"success": false, "error": ...}`, keeping FastAPI's `detail` list beside it."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{'.'.join(str(part) for part in error['loc'] if part != 'query')}: {error['msg']}"
        for error in exc.errors()
    ]
    return JSONResponse(
        {
            "success": False,
            "error": "; ".join(problems) or "invalid request",
            "detail": jsonable_encoder(exc.errors()),
        },
        status_code=422,
    )


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    """A 405 whose `Allow` lists every method the path answers.

    Starlette names only the methods of the first route whose path matched, so a path
    served by two routes (`GET` and `HEAD` of `/widget.js`) or shadowed by a templated one
    (`/api/simpro/{metric}` before `/api/simpro/webhooks`) got a wrong `Allow`.
    """
    allowed = allowed_methods(request.app.router.routes, request.scope)
    return JSONResponse(
        {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)}
    )


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """The methods of the routes whose path matches the request's, sorted.

    A concrete path's routes win over templated ones that also match it, as in OpenAPI:
    `/api/simpro/webhooks` allows `POST` only, though `/api/simpro/{metric}` matches it too.
    """
    matching = [
        route
        for route in routes
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE
    ]
    concrete = [route for route in matching if not route.param_convertors]
    return sorted({method for route in concrete or matching for method in route.methods or ()})
