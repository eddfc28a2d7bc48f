"""What stands between a client and the Simpro resources: counting, hooks, the rate
limit, latency, injected faults and authentication, in that order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import UNAUTHORIZED_BODY, Authenticator
from .limits import FaultInjector, LatencyModel, RateLimit
from .stats import DROPPED, RequestStats

API_PREFIX = "/api/v1.0/"
TOKEN_PATH = "/oauth2/token"
RATE_LIMITED_BODY = {"errors": [{"message": "Rate limit exceeded"}]}
# What a load balancer in front of a build says when the build is down.
_HTML_503 = (
    b"<html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>503 Service Unavailable</h1></body></html>"
)
# What a "drop" manages to send before the connection dies: the start of a JSON array.
_DROP_PREFIX = b'[{"ID":10001,"Type":"TaxInvoice","Customer":{"ID":'
_DROP_CLAIMED_LENGTH = 4096


class ConnectionDroppedError(Exception):
    """Raised mid-response for a "drop" fault.

    uvicorn answers an exception after the response started by closing the socket,
    which is exactly a dropped connection; the in-process transport turns it into
    httpx.RemoteProtocolError.
    """


@dataclass(frozen=True)
class GateParts:
    stats: RequestStats
    hooks: list[Callable[[int], None]]
    limiter: RateLimit
    latency: LatencyModel
    faults: FaultInjector
    authenticator: Authenticator
    slow_seconds: float
    clock: Callable[[], float]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def send_json(
    send: Send, status: int, payload: object, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_bytes(send, status, json.dumps(payload).encode(), b"application/json", headers)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class SimproGate:
    """ASGI middleware applying the build's behaviour to Simpro requests.

    Simpro requests are /api/v1.0/... and /oauth2/token; /__ control endpoints pass
    straight through. The rate limit and faults apply to /api/v1.0/ only, so a
    scripted fault schedule lines up with API calls, not token refreshes.
    """

    def __init__(self, app: ASGIApp, parts: GateParts) -> None:
        self.app = app
        self.parts = parts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._dated(send)
        path: str = scope["path"]
        is_api = path.startswith(API_PREFIX)
        if not is_api and path.rstrip("/") != TOKEN_PATH:
            await self.app(scope, receive, send)
            return
        parts = self.parts
        number = parts.stats.begin(path)
        for hook in list(parts.hooks):
            hook(number)
        counted = self._counted(send)
        if is_api and not parts.limiter.try_acquire():
            # Checked on arrival, before latency; deliberately no Retry-After.
            await send_json(counted, 429, RATE_LIMITED_BODY)
            return
        delay = parts.latency.next_delay()
        if delay > 0:
            await asyncio.sleep(delay)
        fault = parts.faults.draw() if is_api else None
        if fault is None:
            await self._answer(scope, receive, counted, is_api)
            return
        parts.stats.fault(fault)
        await self._fault(fault, scope, receive, send, counted)

    async def _fault(
        self, fault: str, scope: Scope, receive: Receive, send: Send, counted: Send
    ) -> None:
        if fault == "5xx":
            if self.parts.faults.pick_5xx() == 500:
                await send_json(counted, 500, {"errors": [{"message": "Internal Server Error"}]})
            else:
                await send_bytes(counted, 503, _HTML_503, b"text/html; charset=utf-8")
        elif fault == "429":
            await send_json(counted, 429, RATE_LIMITED_BODY, [(b"retry-after", b"1")])
        elif fault == "slow":
            receive, hung_up = await self._stall(receive)
            if not hung_up:
                await self._answer(scope, receive, counted, True)
        elif fault == "truncated":
            await self._truncated(scope, receive, counted)
        else:  # "drop"
            self.parts.stats.finish(DROPPED)
            head = [
                (b"content-type", b"application/json"),
                (b"content-length", str(_DROP_CLAIMED_LENGTH).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            await send({"type": "http.response.body", "body": _DROP_PREFIX, "more_body": True})
            raise ConnectionDroppedError("simulated connection drop")

    async def _answer(self, scope: Scope, receive: Receive, send: Send, is_api: bool) -> None:
        if is_api and not self.parts.authenticator.authorized(_header(scope, b"authorization")):
            await send_json(send, 401, UNAUTHORIZED_BODY, [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)

    async def _stall(self, receive: Receive) -> tuple[Receive, bool]:
        """Wait slow_seconds, or less if the client hangs up first (it timed out).

        Stopping early keeps timed-out requests from piling up and lets the server
        shut down promptly. Returns a receive that replays what the wait consumed,
        and whether the client is gone (then there is nobody to answer).
        """
        consumed: list[Message] = []

        async def watch() -> None:
            while True:
                consumed.append(await receive())
                if consumed[-1]["type"] == "http.disconnect":
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({watcher}, timeout=self.parts.slow_seconds)
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})  # let it finish cancelling; never raises
        hung_up = any(m["type"] == "http.disconnect" for m in consumed)

        async def replay() -> Message:
            return consumed.pop(0) if consumed else await receive()

        return replay, hung_up

    async def _truncated(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The real answer with half its body: complete at the HTTP level, invalid JSON."""
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                chunks.append(message.get("body", b""))

        await self._answer(scope, receive, capture, True)
        body = b"".join(chunks)
        cut = body[: len(body) // 2]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send(
            {"type": "http.response.start", "status": start.get("status", 200), "headers": headers}
        )
        await send({"type": "http.response.body", "body": cut})

    def _dated(self, send: Send) -> Send:
        """Give every response a Date header unless the handler set one (at its snapshot)."""
        clock = self.parts.clock

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"date" for k, _ in headers):
                    headers.append((b"date", formatdate(clock(), usegmt=True).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        return dated

    def _counted(self, send: Send) -> Send:
        stats = self.parts.stats

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                stats.finish(int(message["status"]))
            await send(message)

        return counted
