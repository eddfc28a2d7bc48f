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

from simpro_counter.settings import Settings, simpro_config
from simpro_counter.web import admin, api_docs, counters, history, ops, pages, webhooks
from simpro_counter.web.allow import MethodNotAllowed
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
    # policy. Their pages are api_docs' routes, which add the policy of every page.
    app = FastAPIOffline(
        docs_url=None,
        redoc_url=None,
        static_url=api_docs.ASSETS_URL,
        title="simpro-counter",
        summary="Exact, instant counters from a Simpro build",
        version="0.1.0",
        lifespan=lifespan,
        # Answers any operation may get before its handler runs.
        responses={431: {"description": "Request header fields too large"}},
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
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
    app.include_router(api_docs.router)
    app.include_router(admin.router, tags=["admin"])
    app.include_router(webhooks.router, tags=["webhooks"])
    # The app's own routes (docs, schema) and each router's, for the `Allow` of a 405.
    routers = (history, counters, ops, pages, api_docs, admin, webhooks)
    routes = [*app.router.routes, *(r for module in routers for r in module.router.routes)]
    app.add_exception_handler(405, MethodNotAllowed(routes))
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
