"""The `405 Method Not Allowed` answer, with an `Allow` header that names every method
the path answers.

Starlette names only the methods of the first route whose path matched, so a path served
by two routes (`GET` and `HEAD` of `/widget.js`) or shadowed by a templated one
(`/api/simpro/{metric}` matches `/api/simpro/webhooks`) got a wrong `Allow`. Here the
routes are the app's own, given once when it is built (the routers' routes are read
directly: how FastAPI nests included routers is its own business).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope


class MethodNotAllowed:
    """The exception handler for 405s (`app.add_exception_handler(405, ...)`)."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._routes = [route for route in routes if isinstance(route, Route) and route.methods]

    def allowed(self, scope: Scope) -> list[str]:
        """The methods of the routes whose path matches the request's, sorted.

        A concrete path's routes win over templated ones that also match it, as in
        OpenAPI: `/api/simpro/webhooks` allows `POST` only.
        """
        matching = [route for route in self._routes if route.matches(scope)[0] != Match.NONE]
        concrete = [route for route in matching if not route.param_convertors]
        return sorted({method for route in concrete or matching for method in route.methods or ()})

    async def __call__(self, request: Request, exc: Exception) -> Response:
        allowed = self.allowed(request.scope)
        if allowed:
            headers = {"Allow": ", ".join(allowed)}
        else:  # not one of the routes (e.g. the docs' static files): as the raiser said
            headers = dict(getattr(exc, "headers", None) or {})
        detail = exc.detail if isinstance(exc, HTTPException) else "Method Not Allowed"
        return JSONResponse({"detail": detail}, status_code=405, headers=headers)
