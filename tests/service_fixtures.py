"""The service for tests: in-process (ASGI, with its lifespan) or as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from simpro_counter.settings import Settings
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.web import create_app
from tests.transports import LateASGITransport

# ADMIN_TOKEN must be at least 32 characters: every test and benchmark uses this one.
ADMIN_TOKEN = "test-admin-token-0123456789abcdefghij"
WEBHOOK_SECRET = "test-webhook-secret"


def service_settings(redis_url: str | None, **overrides: Any) -> Settings:
    """Settings for a test service: the simulator's key, a key prefix of its own."""
    values: dict[str, Any] = {
        "simpro_base_url": "https://simpro.test",
        "simpro_api_key": "demo-key",
        "simpro_rate_limit": 1000.0,
        "simpro_timeout": 2.0,
        "redis_url": redis_url,
        "key_prefix": f"test-{uuid.uuid4().hex[:8]}",
        "admin_token": ADMIN_TOKEN,
        "refresh_check_interval": 3600.0,
    }
    values.update(overrides)
    return Settings(**values)


def service_env(
    simpro_url: str,
    *,
    prefix: str,
    redis_url: str | None = None,
    admin_token: str | None = ADMIN_TOKEN,
    **extra: str,
) -> dict[str, str]:
    """The environment of a test service process: the simulator's key, no rate limit to
    speak of, a key prefix of its own (`prefix-<random>`); REDIS_URL and ADMIN_TOKEN when
    given, then `extra` (environment variable names)."""
    env = {
        "SIMPRO_BASE_URL": simpro_url,
        "SIMPRO_API_KEY": "demo-key",
        "SIMPRO_RATE_LIMIT": "1000",
        "KEY_PREFIX": f"{prefix}-{uuid.uuid4().hex[:8]}",
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if admin_token is not None:
        env["ADMIN_TOKEN"] = admin_token
    env.update(extra)
    return env


def webhook_simulator(
    redis_url: str | None,
    *,
    invoices: int,
    customers: int,
    seed: int,
    build: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> tuple[Simulator, LateASGITransport, Settings]:
    """A simulator that delivers signed webhooks to a service in-process, and its settings.

    Deliveries go through the returned transport: set its `app` to the running app.
    `build` holds further `SimulatorConfig` options; `overrides` are the service's settings.
    """
    late = LateASGITransport()
    simulator = Simulator(
        SimulatorConfig(
            invoices=invoices, customers=customers, seed=seed, rate=0,
            webhook_url="http://service/api/simpro/webhooks", webhook_secret=WEBHOOK_SECRET,
            **(build or {}),
        ),
        webhook_transport=late,
    )  # fmt: skip
    return simulator, late, service_settings(redis_url, webhook_secret=WEBHOOK_SECRET, **overrides)


@asynccontextmanager
async def running_app(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan (Redis, scheduler) and an HTTP client wired to it."""
    app = create_app(settings, simpro_transport=transport)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service"
        ) as client,
    ):
        yield app, client


async def wait_for_count(client: httpx.AsyncClient, within: float = 30.0) -> dict[str, Any]:
    """Poll the counter until it has a value and the refresh that made it has finished.

    A refresh publishes first and records its status and releases its lock after, so a
    request right after the value appears could still find it running.
    """
    deadline = time.monotonic() + within
    while True:
        body: dict[str, Any] = (await client.get("/api/simpro/customers")).json()
        status = (await client.get("/api/simpro/customers/refresh")).json()
        if body["count"] is not None and not status["isRefreshing"]:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"no count after {within} s: {body}")
        await asyncio.sleep(0.05)


def wait_until_counted(url: str, within: float = 60.0) -> int:
    """`wait_for_count` for a service over real HTTP; returns the count."""
    deadline = time.monotonic() + within
    while True:
        try:
            count = httpx.get(f"{url}/api/simpro/customers", timeout=2).json()["count"]
            status = httpx.get(f"{url}/api/simpro/customers/refresh", timeout=2).json()
            if isinstance(count, int) and not status["isRefreshing"]:
                return count
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no finished refresh at {url} within {within} s")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def service_process(env: dict[str, str], cwd: Path) -> Iterator[ServiceProcess]:
    """`simpro-counter serve` as its own process, stopped by its PID."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMPRO_", "REDIS"))}
    full_env.update(env)
    log = (cwd / f"service-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "simpro_counter", "serve", "--port", str(port)],
        env=full_env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, cwd / f"service-{port}.log")
        yield ServiceProcess(url, process)
    finally:
        stop_process(process)
        log.close()


def stop_process(
    process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, timeout: float = 15
) -> None:
    """Ask a process to stop by its PID; kill it if it has not after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the service did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
