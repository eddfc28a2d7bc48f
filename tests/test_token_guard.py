"""Who learns what about ADMIN_TOKEN: one throttle for every check of it (logins, bearer
tokens, the detailed /readyz), digests compared, details only with the token, and
rate-limited warnings for what anyone can trigger.

The app runs in-process with its lifespan, a real redis-server and the simulator; the
concurrent logins go to a real uvicorn server over TCP.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from simpro_counter.logsafe import RateLimitedLog
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.web import create_app
from simpro_counter.web.throttle import Reservation, Throttled, TokenThrottle
from tests.service_fixtures import (
    ADMIN_TOKEN,
    WEBHOOK_SECRET,
    running_app,
    service_settings,
    wait_for_count,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REFRESH = "/api/simpro/customers/refresh?background=true"
SAME_ORIGIN = {"Origin": "http://service", "Sec-Fetch-Site": "same-origin"}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _simulator(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"invoices": 300, "customers": 80, "seed": 41, "rate": 0}
    values.update(overrides)
    return Simulator(SimulatorConfig(**values))


@asynccontextmanager
async def _service(
    redis_url: str, simulator: Simulator | None = None, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Clock]]:
    """The app with its first count done, its token throttle on a hand-moved clock."""
    simulator = simulator or _simulator()
    settings = service_settings(redis_url, **overrides)
    async with running_app(settings, simulator.transport()) as (app, client):
        await wait_for_count(client)
        clock = Clock()
        app.state.runtime.token_throttle = TokenThrottle(clock=clock)
        yield app, client, clock


def _from(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client of `app` whose requests come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://service")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the throttle itself -------------------------------------------------------------


def test_throttled_attempts_are_not_counted_so_a_lockout_ends_a_window_after_guessing() -> None:
    clock = Clock()
    throttle = TokenThrottle(max_failures=3, max_global=100, window=300, clock=clock)
    for _ in range(3):
        assert isinstance(throttle.reserve("a"), Reservation)
    refused = throttle.reserve("a")
    assert isinstance(refused, Throttled)
    assert refused.retry_after == 301
    # Guessing on while throttled does not push the end of the lockout back.
    for step in range(1, 300, 7):
        clock.now = 1000.0 + step
        assert isinstance(throttle.reserve("a"), Throttled)
    assert isinstance(throttle.reserve("b"), Reservation)  # others are not affected
    clock.now = 1300.5
    assert isinstance(throttle.reserve("a"), Reservation)


def test_a_refunded_attempt_does_not_count() -> None:
    throttle = TokenThrottle(max_failures=2, max_global=100, clock=Clock())
    for _ in range(5):
        reservation = throttle.reserve("admin")
        assert isinstance(reservation, Reservation)
        throttle.refund(reservation)
    assert throttle.retry_after("admin") == 0


def test_the_global_limit_bounds_guesses_from_many_addresses() -> None:
    clock = Clock()
    throttle = TokenThrottle(max_failures=10, max_global=25, window=300, clock=clock)
    counted = sum(isinstance(throttle.reserve(f"10.0.{i}.1"), Reservation) for i in range(100))
    assert counted == 25
    assert throttle.retry_after("192.0.2.1") == 301  # a new address too
    clock.now += 301
    assert throttle.retry_after("192.0.2.1") == 0


# --- bearer tokens over HTTP ---------------------------------------------------------


async def test_after_wrong_bearer_tokens_even_the_right_one_is_refused_until_the_window_ends(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _service(redis_url) as (_, client, clock):
        with caplog.at_level(logging.WARNING, logger="simpro_counter"):
            for i in range(10):
                wrong = await client.post(REFRESH, headers=_bearer(f"guess-{i:02d}" * 4))
                assert wrong.status_code == 401, wrong.text
        assert "Wrong bearer token from" in caplog.text
        right = await client.post(REFRESH, headers=AUTH)
        assert right.status_code == 429, right.text
        assert int(right.headers["Retry-After"]) == 301
        assert right.json()["success"] is False
        # Refused guesses are not counted: the lockout still ends 300 s after the last one.
        clock.now += 200
        assert (await client.post(REFRESH, headers=_bearer("x" * 40))).status_code == 429
        clock.now += 101
        started = await client.post(REFRESH, headers=AUTH)
        assert started.status_code == 202, started.text


async def test_the_global_limit_refuses_a_new_address_and_warnings_stay_bounded(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _service(redis_url) as (app, _, clock):
        with caplog.at_level(logging.WARNING, logger="simpro_counter"):
            for i in range(10):
                async with _from(app, f"198.51.100.{i + 1}") as guesser:
                    for j in range(10):
                        answer = await guesser.post(REFRESH, headers=_bearer(f"{i}-{j}" * 12))
                        assert answer.status_code == 401
        bearer_lines = [r for r in caplog.records if "bearer" in r.getMessage().lower()]
        assert 1 <= len(bearer_lines) <= 11
        async with _from(app, "203.0.113.7") as admin:
            refused = await admin.post(REFRESH, headers=AUTH)
            assert refused.status_code == 429, refused.text
            clock.now += 301
            assert (await admin.post(REFRESH, headers=AUTH)).status_code == 202


async def test_logins_and_bearer_tokens_spend_one_budget(redis_url: str) -> None:
    async with _service(redis_url) as (_, client, _clock):
        for i in range(10):
            assert (await client.post(REFRESH, headers=_bearer(f"g{i}" * 20))).status_code == 401
        login = await client.post("/admin/login", data={"token": ADMIN_TOKEN}, headers=SAME_ORIGIN)
        assert login.status_code == 429
        assert "set-cookie" not in login.headers


async def test_tokens_are_compared_as_digests_of_equal_length(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    async with _service(redis_url) as (_, client, _clock):
        monkeypatch.setattr(hmac, "compare_digest", recording)
        assert (await client.post(REFRESH, headers=_bearer("short"))).status_code == 401
        form = {"token": "short"}
        assert (
            await client.post("/admin/login", data=form, headers=SAME_ORIGIN)
        ).status_code == 401
        monkeypatch.setattr(hmac, "compare_digest", real)
    assert len(compared) >= 2
    assert set(compared) == {(32, 32)}, compared  # SHA-256 digests, whatever was sent


async def test_without_admin_token_demo_mode_refuses_loopback_refreshes_too(
    redis_url: str,
) -> None:
    async with _service(redis_url, admin_token=None, demo=True) as (_, client, _clock):
        for headers in ({}, AUTH):
            refused = await client.post(REFRESH, headers=headers)
            assert refused.status_code == 403, refused.text
            assert "set ADMIN_TOKEN" in refused.json()["error"]


# --- details only with the token -----------------------------------------------------


async def test_readyz_shows_locations_and_errors_only_with_the_token(redis_url: str) -> None:
    simulator = _simulator()
    async with _service(redis_url, simulator) as (app, client, _clock):
        simulator.faults.rate = 1.0
        simulator.faults.kinds = ("5xx",)
        public = await client.get("/readyz")
        assert public.status_code == 503
        body = public.json()
        assert body["redis"] == {"ok": True, "location": None, "storage": "redis", "error": None}
        assert body["simpro"] == {"ok": False, "detail": "unreachable"}
        assert "simpro.test" not in public.text
        assert public.headers["cache-control"] == "no-store"

        detailed = (await client.get("/readyz", headers=AUTH)).json()
        assert detailed["redis"]["location"] == app.state.runtime.store.redis_location
        assert detailed["simpro"]["detail"] not in ("unreachable", None)

        # A guess sent to /readyz is a guess like any other: refused, then throttled.
        for i in range(10):
            wrong = await client.get("/readyz", headers=_bearer(f"r{i}" * 20))
            assert wrong.status_code == 401
            assert "location" not in wrong.text
        throttled = await client.get("/readyz", headers=AUTH)
        assert throttled.status_code == 429
        assert (await client.post(REFRESH, headers=AUTH)).status_code == 429


async def test_refresh_status_shows_the_error_itself_only_with_the_token(redis_url: str) -> None:
    simulator = _simulator()
    async with _service(redis_url, simulator, simpro_retry_attempts=2) as (_, client, _clock):
        simulator.faults.rate = 1.0
        simulator.faults.kinds = ("5xx",)
        failed = await client.post("/api/simpro/customers/refresh", headers=AUTH)
        assert failed.status_code == 502
        public = (await client.get("/api/simpro/customers/refresh")).json()
        assert public["lastError"] is not None
        assert "failed 2 times" not in public["lastError"]
        assert "simpro.test" not in public["lastError"]
        assert public["lastErrorAt"] is not None
        detailed = await client.get("/api/simpro/customers/refresh", headers=AUTH)
        assert "failed 2 times" in detailed.json()["lastError"]
        wrong = await client.get("/api/simpro/customers/refresh", headers=_bearer("n" * 40))
        assert wrong.status_code == 401


# --- logins held open against a real server --------------------------------------------


@contextmanager
def _uvicorn(app: FastAPI) -> Iterator[int]:
    """`app` (with its lifespan) under uvicorn on a free loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped"
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


async def _held_login(port: int, token: str, release: asyncio.Event) -> int:
    """POST /admin/login sending the headers at once and the body only on `release`."""
    body = urlencode({"token": token}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            (
                f"POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nSec-Fetch-Site: same-origin\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        await release.wait()
        writer.write(body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 20)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_parallel_logins_holding_their_bodies_are_counted_before_they_are_read(
    redis_url: str,
) -> None:
    simulator = _simulator()
    app = create_app(service_settings(redis_url), simpro_transport=simulator.transport())
    with _uvicorn(app) as port:
        release = asyncio.Event()
        logins = [
            asyncio.create_task(_held_login(port, f"guess-{i:02d}" * 4, release)) for i in range(20)
        ]
        await asyncio.sleep(1.0)  # every request is inside the app, waiting for its body
        release.set()
        statuses = await asyncio.wait_for(asyncio.gather(*logins), 30)
        assert sorted(statuses) == [401] * 10 + [429] * 10
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            right = await client.post(
                "/admin/login",
                data={"token": ADMIN_TOKEN},
                headers={"Sec-Fetch-Site": "same-origin"},
            )
        assert right.status_code == 429


# --- rate-limited warnings -------------------------------------------------------------


def test_rate_limited_log_lets_a_burst_through_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = logging.getLogger("simpro_counter.test")
    limited = RateLimitedLog(burst=3, interval=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="simpro_counter.test"):
        for i in range(50):
            limited.warning(log, "a", "a %d", i)
        limited.warning(log, "b", "b")  # another kind has its own budget
        assert limited.suppressed("a") == 47
        clock.now += 60
        limited.warning(log, "a", "a again")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "a 0",
        "a 1",
        "a 2",
        "Further a warnings suppressed for 60 s",
        "b",
        "47 more a warnings suppressed in the last 60 s",
        "a again",
    ]


async def test_a_thousand_bad_webhooks_log_a_bounded_number_of_lines(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = service_settings(redis_url, webhook_secret=WEBHOOK_SECRET)
    async with running_app(settings, _simulator().transport()) as (app, client):
        clock = Clock()
        app.state.runtime.warnings = RateLimitedLog(clock=clock)
        with caplog.at_level(logging.WARNING, logger="simpro_counter"):
            for i in range(1000):
                headers = {"X-Response-Signature": f"{i:040x}"}
                response = await client.post(
                    "/api/simpro/webhooks", content=b'{"ID": "invoice.created"}', headers=headers
                )
                assert response.status_code == 401
            bad_body = await client.post("/api/simpro/webhooks", content=b"x" * 70_000)
            assert bad_body.status_code == 413
            clock.now += 60
            await client.post("/api/simpro/webhooks", content=b"{}")
    messages = [r.getMessage() for r in caplog.records if r.name == "simpro_counter"]
    assert len(messages) <= 13, messages[:20]
    assert "991 more webhook warnings suppressed in the last 60 s" in messages
    assert sum("Webhook refused (401)" in message for message in messages) == 11
