"""A real webhook receiver for simulator tests: a Starlette app, in-process or under uvicorn.

In-process, a simulator reaches it through an injected `httpx.ASGITransport` and sends
when a test calls `await sim.webhooks.flush()`; under uvicorn (`serve_receiver`) a
running simulator feeds it in the background over real HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class Receiver:
    """Records every POST to /hook; answers with queued statuses, then 200."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.statuses: list[int] = []
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        self.received.append((await request.body(), dict(request.headers)))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.received]

    def events(self) -> list[str]:
        return [str(payload["ID"]) for payload in self.payloads()]


def verify(body: bytes, headers: dict[str, str], secret: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(headers["x-response-signature"], expected)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def serve_receiver(receiver: Receiver) -> Iterator[str]:
    """The receiver under uvicorn on a free loopback port; yields its /hook URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(
        uvicorn.Config(receiver.app, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
