"""Raw ASGI answers for the hottest public reads, ahead of the framework's routing.

`GET /api/simpro/{metric}` (what every widget and page view asks) and `GET /healthz` are
answered here without building a Request, running dependencies or the CORS middleware;
everything else (including CORS preflight) goes to the FastAPI app. The routes of the same
paths still exist in the app, for the OpenAPI documentation.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simpro_counter.metrics import METRICS
from simpro_counter.web.reads import Answer
from simpro_counter.web.runtime import Runtime

_EXPOSE = (b"access-control-expose-headers", b"ETag, Retry-After")
_METRIC_PATHS = {f"/api/simpro/{name}": name for name in METRICS}


class FastReads:
    def __init__(self, app: ASGIApp, cors_origins: list[str]) -> None:
        self.app = app
        self._any_origin = "*" in cors_origins
        self._origins = {origin.encode() for origin in cors_origins}
        # Built here, in the process that serves: with `serve --workers N` the PID header
        # tells which worker answered (operators and tests read it; nothing depends on it).
        self._health = Answer.make(
            200,
            [(b"content-type", b"application/json"), (b"x-worker-pid", str(os.getpid()).encode())],
            b'{"status":"ok"}',
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            metric = _METRIC_PATHS.get(path)
            if metric is not None:
                runtime: Runtime = scope["app"].state.runtime
                if_none_match, origin = _headers(scope)
                answer = await runtime.reads.read(metric, if_none_match)
                await self._send(send, answer, origin, scope["method"] == "HEAD")
                return
            if path == "/healthz":
                await self._send(send, self._health, None, scope["method"] == "HEAD")
                return
        await self.app(scope, receive, send)

    async def _send(self, send: Send, answer: Answer, origin: bytes | None, head: bool) -> None:
        # CDNs cache these answers: with "*" every answer carries the CORS header, and with
        # a list every answer says it varies by Origin, so no cached copy lacks it.
        if self._any_origin:
            headers = [*answer.headers, (b"access-control-allow-origin", b"*"), _EXPOSE]
        elif origin is not None and origin in self._origins:
            allow = (b"access-control-allow-origin", origin)
            headers = [*answer.headers, allow, (b"vary", b"Origin"), _EXPOSE]
        else:
            headers = [*answer.headers, (b"vary", b"Origin")]
        start: Message = {
            "type": "http.response.start",
            "status": answer.status,
            "headers": headers,
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"" if head else answer.body})


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    if_none_match = origin = None
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            if_none_match = value
        elif name == b"origin":
            origin = value
    return if_none_match, origin
