"""An in-process httpx transport that behaves like the network for the simulator."""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import ASGIApp

from .gate import ConnectionDroppedError


class SimulatorTransport(httpx.AsyncBaseTransport):
    """httpx.ASGITransport plus the two things a socket would do differently.

    - A "drop" fault surfaces as httpx.RemoteProtocolError, as over real HTTP.
    - The request's read timeout is honoured (ASGITransport ignores timeouts), so a
      "slow" fault makes a client time out in-process too: httpx.ReadTimeout.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read") if isinstance(timeouts, dict) else None
        try:
            async with asyncio.timeout(read_timeout):
                return await self._inner.handle_async_request(request)
        except ConnectionDroppedError as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response.", request=request
            ) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("Timed out waiting for the response", request=request) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()
