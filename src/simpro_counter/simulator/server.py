"""Running the simulator over real HTTP with uvicorn."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from .config import SimulatorConfig
from .gate import ConnectionDroppedError
from .simulator import Simulator

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunningSimulator:
    url: str  # e.g. "http://127.0.0.1:54321", without a trailing slash
    simulator: Simulator


class _HideDrops(logging.Filter):
    """Silences uvicorn's traceback for the exception that implements "drop" faults."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDroppedError))


def _bind(host: str, port: int) -> socket.socket:
    # Binding ourselves (rather than letting uvicorn) tells us the port picked for 0.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _server(simulator: Simulator, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        simulator.app,
        log_level=log_level,
        access_log=False,
        lifespan="on",  # starts the background webhook deliveries
        # The app sets Date itself (at its data snapshot); uvicorn's would be a duplicate.
        date_header=False,
    )
    logging.getLogger("uvicorn.error").addFilter(_HideDrops())
    return uvicorn.Server(config)


@contextmanager
def running_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningSimulator]:
    """Serve a new Simulator on a background thread for the duration of the block."""
    simulator = Simulator(config)
    sock = _bind(host, port)
    server = _server(simulator, "warning")
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="simpro-simulator", daemon=True
    )
    thread.start()
    url = _url(host, sock)
    try:
        _wait_until_up(server, thread, url)
        yield RunningSimulator(url=url, simulator=simulator)
    finally:
        server.should_exit = True
        thread.join(_STOP_TIMEOUT)
        sock.close()


def _wait_until_up(server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"simulator did not start at {url}")
        time.sleep(0.01)
    # /__truth is outside the Simpro paths: probing it costs no rate-limit token.
    httpx.get(f"{url}/__truth", timeout=_START_TIMEOUT).raise_for_status()


def serve(config: SimulatorConfig, host: str, port: int) -> None:
    """Serve a simulator until interrupted (Ctrl-C); for `simpro-counter simulate`."""
    simulator = Simulator(config)
    sock = _bind(host, port)
    server = _server(simulator, "info")
    # uvicorn's logger is configured by now, so this line shows with its output.
    logging.getLogger("uvicorn.error").info(
        "Simpro simulator at %s (API key %r, client %r/%r) truth: %s",
        _url(host, sock),
        config.api_key,
        config.client_id,
        config.client_secret,
        json.dumps(simulator.truth().as_json()),
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
