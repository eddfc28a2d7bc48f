"""The HTTP server's edge, against `simpro-counter serve` over real sockets.

A request's head is bounded (MAX_REQUEST_HEAD), so are the connections served at once
(MAX_CONNECTIONS), and X-Forwarded-For/-Proto count only from the proxies that
FORWARDED_ALLOW_IPS names.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from simpro_counter.simulator import RunningSimulator, SimulatorConfig, running_simulator
from simpro_counter.store import EmbeddedRedis
from tests.service_fixtures import ServiceProcess, service_env, service_process

TOKEN = "edge-admin-token-" + "x" * 24
MAX_CONNECTIONS = 4
MAX_HEAD = 16 * 1024  # the default
# A login throttle's limit (web/admin/throttle.py): wrong tokens before 429.
MAX_FAILURES = 10


@dataclass(frozen=True)
class Address:
    host: str
    port: int


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with running_simulator(SimulatorConfig(invoices=60, customers=20, seed=61, rate=0)) as sim:
        yield sim


def _env(sim: RunningSimulator, redis: EmbeddedRedis, **extra: str) -> dict[str, str]:
    return service_env(
        sim.url,
        prefix="edge",
        redis_url=redis.url,
        admin_token=TOKEN,
        REFRESH_CHECK_INTERVAL="3600",
        **extra,
    )


@pytest.fixture(scope="module")
def service(
    simulator: RunningSimulator,
    shared_redis: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    env = _env(simulator, shared_redis, MAX_CONNECTIONS=str(MAX_CONNECTIONS))
    with service_process(env, tmp_path_factory.mktemp("edge")) as svc:
        yield svc


def _address(service: ServiceProcess) -> Address:
    host, _, port = service.url.removeprefix("http://").rpartition(":")
    return Address(host, int(port))


def _connect(address: Address) -> socket.socket:
    sock = socket.create_connection((address.host, address.port), timeout=10)
    sock.settimeout(10)
    return sock


def _request(path: str, headers: dict[str, str] | None = None, method: str = "GET") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: service",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one answer on the connection (its body by Content-Length)."""
    data = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data[:200]!r}")
        data += chunk
        assert time.monotonic() < deadline
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
        assert time.monotonic() < deadline
    return int(head.split(b" ", 2)[1]), body[:length]


def _refused_or_status(sock: socket.socket, payload: bytes) -> int | None:
    """Send `payload` (as much as the server takes); the status it answers, or None when it
    closed the connection without one."""
    # When it stops reading, its answer (if any) is already on the way.
    with suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(payload)
    try:
        return _read_response(sock)[0]
    except (ConnectionError, OSError):
        return None


def test_a_4_mb_header_is_refused_without_being_read(service: ServiceProcess) -> None:
    with _connect(_address(service)) as sock:
        status = _refused_or_status(
            sock, _request("/api/simpro/customers", {"If-None-Match": "x" * (4 * 1024 * 1024)})
        )
    assert status in (431, None)
    # The service goes on serving.
    assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200


def test_a_head_just_over_the_bound_in_one_read_is_refused_with_431(
    service: ServiceProcess,
) -> None:
    # Many small headers, arriving together: the bound is on the head's size, not per line.
    headers = {f"X-Filler-{n}": "y" * 200 for n in range(MAX_HEAD // 200)}
    with _connect(_address(service)) as sock:
        assert _refused_or_status(sock, _request("/healthz", headers)) == 431


def test_heads_under_the_bound_pass_on_one_connection_with_bodies_beside_them(
    service: ServiceProcess,
) -> None:
    # Each request's head is counted alone: three near the bound on one keep-alive
    # connection all pass, and a large body in the same read as its head is not a head.
    near = {"If-None-Match": "z" * (MAX_HEAD - 1024)}
    body = b"token=" + b"w" * 60_000
    post = _request(
        "/admin/login",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(body))},
        method="POST",
    )
    with _connect(_address(service)) as sock:
        for _ in range(3):
            sock.sendall(_request("/api/simpro/customers", near))
            assert _read_response(sock)[0] == 200
        sock.sendall(post + body)
        assert _read_response(sock)[0] == 401  # read, and a wrong token
        sock.sendall(_request("/healthz"))
        assert _read_response(sock)[0] == 200


def test_connections_past_max_connections_get_503(service: ServiceProcess) -> None:
    address = _address(service)
    with ExitStack() as stack:
        # Each served, and kept open (keep-alive). Connections of earlier tests may not be
        # gone yet on the server's side: it has room once a new one is served.
        held = [stack.enter_context(_served_connection(address)) for _ in range(MAX_CONNECTIONS)]
        with _connect(address) as excess:
            excess.sendall(_request("/healthz"))
            status, body = _read_response(excess)
            assert status == 503, body
        # One held connection closed makes room for a new one (once the server has seen
        # both it and the refused one go).
        held.pop().close()
        _wait_until_served(address)


def _wait_until_served(address: Address) -> None:
    with _served_connection(address):
        pass


@contextmanager
def _served_connection(address: Address, within: float = 10.0) -> Iterator[socket.socket]:
    """A connection the service answered 200 on, kept open (retried while it has no room)."""
    deadline = time.monotonic() + within
    while True:
        sock = _connect(address)
        sock.sendall(_request("/healthz"))
        if _read_response(sock)[0] == 200:
            break
        sock.close()
        assert time.monotonic() < deadline, "no room for a connection"
        time.sleep(0.05)
    with sock:
        yield sock


# --- Proxy headers -------------------------------------------------------------------


def _login(url: str, token: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-Proto": "https"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return httpx.post(f"{url}/admin/login", data={"token": token}, headers=headers, timeout=10)


def _secure_cookie(response: httpx.Response) -> bool:
    attributes = [part.strip().lower() for part in response.headers["set-cookie"].split(";")]
    return "secure" in attributes


def test_without_trusted_proxies_forwarded_headers_are_a_clients_claims(
    simulator: RunningSimulator, shared_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    with service_process(_env(simulator, shared_redis), tmp_path) as svc:
        signed_in = _login(svc.url, TOKEN, forwarded_for="203.0.113.7")
        assert signed_in.status_code == 303
        assert not _secure_cookie(signed_in)  # plain http, whatever the client says
        # Wrong tokens from "different addresses" are one client, 127.0.0.1, to the throttle.
        for n in range(MAX_FAILURES):
            assert _login(svc.url, "wrong", forwarded_for=f"198.51.100.{n}").status_code == 401
        assert _login(svc.url, "wrong", forwarded_for="198.51.100.200").status_code == 429


def test_a_trusted_proxys_forwarded_headers_are_honoured(
    simulator: RunningSimulator, shared_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    env = _env(simulator, shared_redis, FORWARDED_ALLOW_IPS="127.0.0.1")
    with service_process(env, tmp_path) as svc:
        signed_in = _login(svc.url, TOKEN, forwarded_for="203.0.113.7")
        assert signed_in.status_code == 303
        assert _secure_cookie(signed_in)  # the proxy says the browser used https
        # The throttle counts the client the proxy names: one is stopped, another is not.
        for _ in range(MAX_FAILURES):
            assert _login(svc.url, "wrong", forwarded_for="198.51.100.1").status_code == 401
        assert _login(svc.url, "wrong", forwarded_for="198.51.100.1").status_code == 429
        assert _login(svc.url, "wrong", forwarded_for="198.51.100.2").status_code == 401
