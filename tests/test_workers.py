"""`simpro-counter serve --workers 2` as real processes, with the embedded Redis.

One supervisor, two uvicorn workers, one redis-server owned by the supervisor; the
simulator runs as its own process. The workers are told apart by the `X-Worker-PID`
header of `/healthz`, read on a kept-alive connection: every request on that connection
reaches the same worker.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from simpro_counter.keys import Keys
from simpro_counter.store import ResilientStore, connect
from simpro_counter.store.embedded import find_redis_server
from simpro_counter.store.processes import pid_alive
from simpro_counter.store.values import MetricValue
from tests.service_fixtures import free_port, stop_process, wait_until_counted

# The embedded server's binary name (valkey-server), as it shows in a command line.
SERVER = Path(find_redis_server()).name

CLI = [sys.executable, "-m", "simpro_counter"]
TOKEN = "workers-token"


@dataclass(frozen=True)
class Workers:
    url: str
    port: int
    supervisor: subprocess.Popen[bytes]
    data_dir: Path
    log: Path


def _wait_until(ready: Any, what: str, process: subprocess.Popen[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if ready():
                return
        except (httpx.TransportError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {within} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Each Simpro answer takes 0.3 s, so a refresh lasts long enough for concurrent POSTs
    # to all find it running.
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "simulate", "--port", str(port), "--invoices", "600", "--rate", "0",
         "--latency", "0.3"],
        cwd=tmp_path_factory.mktemp("simulator"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: httpx.get(f"{url}/__truth", timeout=1), "the simulator", process, 30)
        yield url
    finally:
        stop_process(process, signal.SIGINT)


@contextmanager
def serve_workers(simulator: str, cwd: Path) -> Iterator[Workers]:
    """`serve --workers 2` with the embedded Redis in `cwd/data`, counted once."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMPRO_", "REDIS"))}
    env.update(
        SIMPRO_BASE_URL=simulator,
        SIMPRO_API_KEY="demo-key",
        SIMPRO_RATE_LIMIT="1000",
        DATA_DIR=str(cwd / "data"),
        ADMIN_TOKEN=TOKEN,
    )
    log = cwd / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*CLI, "serve", "--workers", "2", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    running = Workers(url, port, process, cwd / "data", log)
    try:
        _wait_until(
            lambda: len(_children(process.pid, "spawn_main")) == 2, "2 workers", process, 60
        )
        _wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1), "the service", process, 60)
        wait_until_counted(url)
        yield running
    finally:
        stop_process(process, timeout=30)


@pytest.fixture(scope="module")
def workers(simulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    with serve_workers(simulator, tmp_path_factory.mktemp("workers")) as running:
        yield running


def _children(pid: int, marker: str) -> list[int]:
    """PIDs of the live children of `pid` whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        if int(ppid) == pid and marker in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class Connection:
    """One kept-alive HTTP connection, so one worker; fails rather than reconnect."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.worker = int(self._request("GET", "/healthz")[2]["x-worker-pid"])
        self._sock = self._conn.sock

    def _request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        self._conn.request(method, path, headers=headers or {})
        response = self._conn.getresponse()
        body = json.loads(response.read())
        return response.status, body, {k.lower(): v for k, v in response.getheaders()}

    def request(self, method: str, path: str, **headers: str) -> tuple[int, Any]:
        status, body, _ = self._request(method, path, headers)
        # Same socket as when the worker was read: the answer came from that worker.
        assert self._conn.sock is self._sock, "the connection was re-opened"
        return status, body

    def close(self) -> None:
        self._conn.close()


@contextmanager
def connections(port: int, per_worker: int) -> Iterator[dict[int, list[Connection]]]:
    """`per_worker` open connections to each of the 2 workers (bounded attempts)."""
    by_worker: dict[int, list[Connection]] = {}
    opened: list[Connection] = []
    try:
        for _ in range(200):
            # Held open, so the kernel hands the next one to whichever worker accepts first.
            conn = Connection(port)
            opened.append(conn)
            kept = by_worker.setdefault(conn.worker, [])
            if len(kept) < per_worker:
                kept.append(conn)
            if len(by_worker) == 2 and all(len(c) == per_worker for c in by_worker.values()):
                break
        assert len(by_worker) == 2, f"only worker(s) {sorted(by_worker)} answered"
        assert all(len(c) == per_worker for c in by_worker.values()), "a worker took too few"
        yield by_worker
    finally:
        for conn in opened:
            conn.close()


def test_the_supervisor_runs_one_redis_server_for_both_workers(workers: Workers) -> None:
    redis_servers = _children(workers.supervisor.pid, SERVER)
    assert len(redis_servers) == 1
    assert int((workers.data_dir / "redis.pid").read_text()) == redis_servers[0]
    log = workers.log.read_text()
    assert log.count("Embedded Redis started") == 1
    assert log.count(f"Redis connected at {workers.data_dir / 'redis.sock'}") == 2
    # No worker started a redis-server of its own.
    for worker in _children(workers.supervisor.pid, "spawn_main"):
        assert _children(worker, SERVER) == []


def test_both_workers_answer_with_the_same_value(workers: Workers) -> None:
    with connections(workers.port, 1) as by_worker:
        assert set(by_worker) == set(_children(workers.supervisor.pid, "spawn_main"))
        answers = [conns[0].request("GET", "/api/simpro/customers") for conns in by_worker.values()]
        assert answers[0] == answers[1]
        assert answers[0][0] == 200
        assert isinstance(answers[0][1]["count"], int)


def test_a_refresh_posted_at_once_to_both_workers_runs_once(workers: Workers) -> None:
    with connections(workers.port, 4) as by_worker:
        posts = [conn for conns in by_worker.values() for conn in conns]
        start = threading.Barrier(len(posts))
        results: list[tuple[int, int]] = []

        def post(conn: Connection) -> None:
            start.wait(timeout=10)
            status, _ = conn.request(
                "POST", "/api/simpro/customers/refresh", Authorization=f"Bearer {TOKEN}"
            )
            results.append((conn.worker, status))

        threads = [threading.Thread(target=post, args=(conn,)) for conn in posts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(results) == len(posts)
        statuses = sorted(status for _, status in results)
        assert statuses == [200] + [409] * (len(posts) - 1), results
        # Both workers refused one: the lock is Redis's, not a worker's.
        assert {worker for worker, status in results if status == 409} == set(by_worker)


def test_a_published_value_is_served_by_every_worker_within_100_ms(workers: Workers) -> None:
    with connections(workers.port, 1) as by_worker:
        conns = [c[0] for c in by_worker.values()]
        before = [conn.request("GET", "/api/simpro/quotes")[1]["count"] for conn in conns]
        assert before[0] == before[1]  # both near-caches now hold the current value
        target = before[0] + 1000

        async def publish_and_watch() -> dict[int, float]:
            client = connect(f"unix://{workers.data_dir / 'redis.sock'}")
            store = ResilientStore(client, Keys())
            try:
                async with store:
                    fence = await store.next_fence("quotes")
                    value = MetricValue("quotes", target, time.time(), 21600, fence=fence)
                    published_at = time.monotonic()
                    assert await store.publish(value)
                    # Polled at once (blocking the loop: nothing else needs it meanwhile).
                    return watch(published_at)
            finally:
                await client.aclose()

        def watch(published_at: float) -> dict[int, float]:
            seen: dict[int, float] = {}
            deadline = published_at + 2.0
            while len(seen) < len(conns) and time.monotonic() < deadline:
                for conn in conns:
                    if (
                        conn.worker not in seen
                        and conn.request("GET", "/api/simpro/quotes")[1]["count"] == target
                    ):
                        seen[conn.worker] = time.monotonic() - published_at
            return seen

        seen = asyncio.run(publish_and_watch())
        assert set(seen) == set(by_worker), f"not every worker served it within 2 s: {seen}"
        assert max(seen.values()) < 0.1, seen


def test_stopping_the_supervisor_stops_the_workers_and_redis(workers: Workers) -> None:
    # Last in this module: it stops the module's service.
    supervisor = workers.supervisor
    pids = [
        *_children(supervisor.pid, "spawn_main"),
        *_children(supervisor.pid, SERVER),
    ]
    assert len(pids) == 3
    stop_process(supervisor, timeout=30)
    assert supervisor.returncode == 0
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids)
    assert not (workers.data_dir / "redis.sock").exists()
    assert "Embedded Redis stopped" in workers.log.read_text()


def test_a_killed_supervisor_takes_its_workers_and_redis_with_it(
    simulator: str, tmp_path: Path
) -> None:
    with serve_workers(simulator, tmp_path) as running:
        supervisor = running.supervisor
        pids = [
            *_children(supervisor.pid, "spawn_main"),
            *_children(supervisor.pid, SERVER),
        ]
        assert len(pids) == 3
        supervisor.kill()  # SIGKILL: no chance to stop anything itself
        supervisor.wait(timeout=10)
        # The kernel's parent-death signal stops both workers and redis-server.
        deadline = time.monotonic() + 15
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(pid_alive(pid) for pid in pids)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{running.url}/healthz", timeout=1)
