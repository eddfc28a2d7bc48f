"""A Redis master killed (SIGKILL) under load: 3 `serve` processes on a Sentinel set-up
and on a Cluster, the simulator as its own process, reads and signed webhooks flowing.

The sender plays Simpro: each new invoice is made in the simulator (control API), its
delivery signed and POSTed to the services round-robin, and retried while it is not
acknowledged (a 503 during the failover), as Simpro retries a failed delivery.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from simpro_counter.keys import WEBHOOK_GROUP, Keys
from simpro_counter.webhooks.signature import sign
from tests.service_fixtures import free_port, service_process, stop_process, wait_until_counted
from tests.topology_fixtures import (
    SENTINEL_PASSWORD,
    Cluster,
    SentinelSetup,
    redis_cluster,
    redis_sentinel,
)

__all__ = ["redis_cluster", "redis_sentinel"]  # module-scoped fixtures used by name

TOKEN = "failover-token"
SECRET = "failover-webhook-secret"
SERVICES = 3
WEBHOOKS = 24  # deliveries sent in all; the master is killed after the 6th


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "simpro_counter", "simulate", "--port", str(port),
         "--invoices", "300", "--customers", "120", "--seed", "141", "--rate", "0"],
        cwd=tmp_path_factory.mktemp("simulator"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/__truth", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        stop_process(process, signal.SIGINT)


def _services(
    stack: ExitStack, simulator: str, cwd: Path, prefix: str, topology: dict[str, str]
) -> list[str]:
    env = {
        "SIMPRO_BASE_URL": simulator,
        "SIMPRO_API_KEY": "demo-key",
        "SIMPRO_RATE_LIMIT": "1000",
        "KEY_PREFIX": prefix,
        "ADMIN_TOKEN": TOKEN,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_CLAIM_IDLE": "3",
        **topology,
    }
    urls = [stack.enter_context(service_process(env, cwd)).url for _ in range(SERVICES)]
    for url in urls:
        wait_until_counted(url, within=30)
    return urls


def _truth(simulator: str) -> dict[str, Any]:
    truth: dict[str, Any] = httpx.get(f"{simulator}/__truth", timeout=5).json()
    return truth


def _delivery(invoice_id: int) -> tuple[bytes, dict[str, str]]:
    triggered = datetime.now(UTC).replace(microsecond=0).isoformat()
    body = json.dumps({
        "ID": "invoice.created", "build": "23.1.0", "action": "created",
        "reference": {"companyID": 0, "invoiceID": invoice_id}, "date_triggered": triggered,
    }).encode()  # fmt: skip
    return body, {
        "X-Response-Signature": sign(body, SECRET, "sha1"),
        "Content-Type": "application/json",
    }


@dataclass
class Load:
    reads: int = 0
    failed_reads: list[str] = field(default_factory=list)
    backwards: list[str] = field(default_factory=list)
    last: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    queued: int = 0  # deliveries answered "queued" (not a replay)
    retried: int = 0
    reads_during_failover: int = 0
    sources: Counter[str] = field(default_factory=Counter)  # of the reads during it
    failing_over: bool = False


async def _read_loop(
    client: httpx.AsyncClient, urls: list[str], load: Load, stop: asyncio.Event
) -> None:
    for i in range(20000):  # bounded; stopped by `stop` long before
        if stop.is_set():
            return
        url = urls[i % len(urls)]
        try:
            answer = await client.get(f"{url}/api/simpro/invoices")
            body = answer.json() if answer.status_code == 200 else {}
            count = body.get("count")
        except (httpx.HTTPError, ValueError) as exc:
            load.failed_reads.append(f"{url}: {exc!r}")
            continue
        load.reads += 1
        if load.failing_over:
            load.reads_during_failover += 1
            load.sources[str(body.get("source"))] += 1
        if not isinstance(count, int):
            load.failed_reads.append(f"{url}: {answer.status_code} {answer.text[:200]}")
            continue
        if count < load.last.get(url, 0):
            load.backwards.append(f"{url}: {load.last[url]} -> {count}")
        load.last[url] = count
        await asyncio.sleep(0.005)


async def _send_webhooks(
    client: httpx.AsyncClient,
    simulator: str,
    urls: list[str],
    load: Load,
    kill_after: asyncio.Event,
) -> None:
    for n in range(WEBHOOKS):
        made = await client.post(f"{simulator}/__invoices", json={"totalExTax": "7.00"})
        assert made.status_code == 201, made.text
        body, headers = _delivery(made.json()["ID"])
        for attempt in range(300):  # ~30 s at most: Simpro retries a failed delivery
            url = urls[(n + attempt) % len(urls)]
            try:
                answer = await client.post(
                    f"{url}/api/simpro/webhooks", content=body, headers=headers
                )
                if answer.status_code < 300:
                    load.queued += answer.json()["queued"] is True
                    break
                assert answer.status_code == 503, answer.text
            except httpx.TransportError:
                pass
            load.retried += 1
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"delivery {n} never acknowledged")
        load.delivered += 1
        if n == 5:
            kill_after.set()
        await asyncio.sleep(0.1)


async def _run(
    simulator: str,
    urls: list[str],
    kill: Callable[[], None],
    promoted: Callable[[], bool],
    stream: tuple[int, str],
) -> tuple[Load, float]:
    """Load, kill the master once the stream runs, time the promotion; then check."""
    load = Load()
    stop = asyncio.Event()
    kill_now = asyncio.Event()
    async with httpx.AsyncClient(timeout=10) as client:
        readers = [asyncio.create_task(_read_loop(client, urls, load, stop)) for _ in range(2)]
        sender = asyncio.create_task(_send_webhooks(client, simulator, urls, load, kill_now))
        await asyncio.wait_for(kill_now.wait(), 30)
        started = time.monotonic()
        load.failing_over = True
        await asyncio.to_thread(kill)
        for _ in range(600):
            if await asyncio.to_thread(promoted) or time.monotonic() - started > 30:
                break
            await asyncio.sleep(0.05)
        failover = time.monotonic() - started
        load.failing_over = False
        assert await asyncio.to_thread(promoted), f"no promotion in {failover:.1f} s"
        await asyncio.wait_for(sender, 60)

        # Every delivery applied: each service's count reaches the simulator's truth.
        truth = _truth(simulator)
        for url in urls:
            count = None
            for _ in range(300):
                count = (await client.get(f"{url}/api/simpro/invoices")).json()["count"]
                if count == truth["invoices"]:
                    break
                await asyncio.sleep(0.05)
            assert count == truth["invoices"], (url, count, truth)
        stop.set()
        await asyncio.gather(*readers)

        # Refreshes resume on the new master, and agree with the truth.
        refreshed = await client.post(
            f"{urls[0]}/api/simpro/invoices/refresh", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert refreshed.status_code == 200, refreshed.text
        for url in urls:
            for metric, name in (("invoices", "invoices"), ("customers", "customers")):
                body = (await client.get(f"{url}/api/simpro/{metric}")).json()
                assert body["count"] == truth[name], (url, metric, body, truth)
    # Exactly once: each delivery queued once however often it was sent, all applied (and
    # so deleted from the stream, which holds only deliveries not yet applied).
    assert load.queued == WEBHOOKS
    assert _stream_state(*stream) == (0, 0)
    assert load.failed_reads == [], load.failed_reads[:5]
    assert load.backwards == [], load.backwards[:5]
    assert load.delivered == WEBHOOKS
    return load, failover


def _stream_state(port: int, key: str) -> tuple[int, int]:
    """(entries, pending) of the webhook stream, once its consumers have caught up."""
    with redis.Redis(port=port, decode_responses=True, socket_timeout=2) as node:
        for _ in range(100):
            pending = int(node.xpending(key, WEBHOOK_GROUP)["pending"])
            if pending == 0:
                break
            time.sleep(0.05)
        return int(node.xlen(key)), pending


def _report(topology: str, load: Load, failover: float) -> None:
    print(
        f"{topology}: failover {failover:.2f} s; {load.reads} reads, all 200, "
        f"{load.reads_during_failover} during the failover {dict(load.sources)}; "
        f"{load.delivered} webhooks applied once, {load.retried} retried deliveries"
    )


async def test_a_sentinel_master_killed_under_load(
    redis_sentinel: SentinelSetup, simulator: str, tmp_path: Path
) -> None:
    setup, prefix = redis_sentinel, "failover-s"
    assert setup.current_master() == setup.master_port
    topology = {"REDIS_SENTINELS": setup.sentinels, "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    with ExitStack() as stack:
        urls = _services(stack, simulator, tmp_path, prefix, topology)

        def kill() -> None:
            process = setup.processes[setup.master_port]
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

        load, failover = await _run(
            simulator,
            urls,
            kill,
            lambda: setup.current_master() == setup.replica_port,
            (setup.replica_port, Keys.of(prefix).webhook_events),
        )
    _report("sentinel", load, failover)


def _slot_owner(cluster: Cluster, tag: str) -> tuple[int, int]:
    """(master port, its replica's port) for the slot of the hash tag."""
    with redis.Redis(port=cluster.ports[0], decode_responses=True, socket_timeout=2) as node:
        slot = int(node.execute_command("CLUSTER KEYSLOT", f"{{{tag}}}"))
        for start, end, master, replica, *_ in node.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(master[1]), int(replica[1])
    raise AssertionError(f"no owner of slot {slot}")


def _is_master(port: int) -> bool:
    try:
        with redis.Redis(port=port, decode_responses=True, socket_timeout=1) as node:
            return bool(node.info("replication")["role"] == "master")
    except redis.RedisError:
        return False


async def test_a_cluster_master_killed_under_load(
    redis_cluster: Cluster, simulator: str, tmp_path: Path
) -> None:
    prefix = "failover-c"
    master, replica = _slot_owner(redis_cluster, prefix)
    url = f"redis://127.0.0.1:{next(p for p in redis_cluster.ports if p != master)}"
    with ExitStack() as stack:
        urls = _services(
            stack, simulator, tmp_path, prefix, {"REDIS_CLUSTER": "true", "REDIS_URL": url}
        )

        def kill() -> None:
            with redis.Redis(port=master, decode_responses=True, socket_timeout=2) as node:
                pid = int(node.info("server")["process_id"])
            os.kill(pid, signal.SIGKILL)

        load, failover = await _run(
            simulator,
            urls,
            kill,
            lambda: _is_master(replica),
            (replica, Keys.of(prefix, cluster=True).webhook_events),
        )
    _report("cluster", load, failover)
