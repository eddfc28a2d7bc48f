"""httpx transports that wrap the real simulator to vary what Simpro sends.

They change one aspect of a real answer (a header dropped, a body rewritten), so the
behaviour around it is exercised against the simulator rather than a hand-written fake.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx


class StripHeaders(httpx.AsyncBaseTransport):
    """Removes response headers, e.g. a build that sends no `Result-Pages`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *names: str) -> None:
        self._inner = inner
        self._names = names

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        await response.aread()
        headers = [(k, v) for k, v in response.headers.items() if k not in self._lower()]
        return httpx.Response(response.status_code, headers=headers, content=response.content)

    def _lower(self) -> set[str]:
        return {name.lower() for name in self._names}


class RewriteBody(httpx.AsyncBaseTransport):
    """Rewrites JSON list bodies with `fn`, e.g. to inject malformed records."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, fn: Callable[[list[Any]], list[Any]]
    ) -> None:
        self._inner = inner
        self._fn = fn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        await response.aread()
        body = response.json() if response.content else None
        if not isinstance(body, list):
            return httpx.Response(
                response.status_code, headers=response.headers, content=response.content
            )
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(
            response.status_code, headers=headers, content=json.dumps(self._fn(body)).encode()
        )


class ConcurrencyProbe(httpx.AsyncBaseTransport):
    """Measures the largest number of requests in flight at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport, hold: float = 0.02) -> None:
        self._inner = inner
        self._hold = hold
        self.in_flight = 0
        self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self._hold)
            return await self._inner.handle_async_request(request)
        finally:
            self.in_flight -= 1


class LateASGITransport(httpx.AsyncBaseTransport):
    """Delivers into an ASGI app created after the component that needs the transport.

    The simulator's webhooks go to the service, which is built after the simulator.
    """

    def __init__(self) -> None:
        self.app: Any = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.app is None:
            raise RuntimeError("LateASGITransport used before its app was set")
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)
