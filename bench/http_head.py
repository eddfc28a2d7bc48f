"""Benchmark: what bounding a request's head costs the server per request.

uvicorn's own httptools protocol and the service's BoundedHttpToolsProtocol
(web/http_protocol.py) each parse and answer the same typical widget read (a browser's
headers, If-None-Match included) over one keep-alive connection, in this process, with
no socket: what is measured is the protocol's CPU per request, the part the bound adds
to. Rounds alternate between the two, so a busy machine slows both alike.

Run: `.venv/bin/python -m bench.http_head [--requests N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from simpro_counter.web.http_protocol import BoundedHttpToolsProtocol

REQUEST = (
    b"GET /api/simpro/customers HTTP/1.1\r\n"
    b"Host: counter.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0 Safari/537.36\r\n"
    b"Accept: */*\r\n"
    b"Accept-Language: en-AU,en;q=0.9\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Origin: https://www.example.com\r\n"
    b'If-None-Match: "450-1770292800000"\r\n'
    b"Sec-Fetch-Site: cross-site\r\n"
    b"Sec-Fetch-Mode: cors\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
BODY = b'{"count":450}'


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": BODY})


class _Transport:
    """Enough of an asyncio transport for uvicorn's protocol: written bytes are dropped."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _round(protocol_class: type[HttpToolsProtocol], requests: int) -> float:
    """Seconds per request."""
    config = Config(app=_app, http=protocol_class, lifespan="off", log_config=None)
    config.load()
    protocol = protocol_class(config, ServerState(), {})
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(requests):
        protocol.data_received(REQUEST)
        await asyncio.sleep(0)  # the request's task runs and answers
    elapsed = time.perf_counter() - started
    assert transport.written > requests * len(BODY), "not every request was answered"
    assert not transport.closed, "the connection was closed"
    protocol.connection_lost(None)
    return elapsed / requests


async def _main(requests: int, rounds: int) -> None:
    times: dict[str, list[float]] = {"uvicorn httptools": [], "bounded httptools": []}
    for _ in range(rounds):
        times["uvicorn httptools"].append(await _round(HttpToolsProtocol, requests))
        times["bounded httptools"].append(await _round(BoundedHttpToolsProtocol, requests))
    base = min(times["uvicorn httptools"])
    print(f"{requests:,} requests per round, {rounds} rounds (best and median per request)")
    for name, values in times.items():
        best = min(values)
        print(
            f"  {name:18} best {best * 1e6:6.2f} µs  median {statistics.median(values) * 1e6:6.2f}"
            f" µs  ({best / base:.3f} of uvicorn's)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(_main(args.requests, args.rounds))


if __name__ == "__main__":
    main()
