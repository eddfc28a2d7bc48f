"""Benchmark: webhook event to visible count, and incremental sync against a full scan.

In one run, against the simulator (rate 10 req/s, 0.5 s per answer, as a busy build):

- event → visible: an invoice for a new customer is created in the simulator, which sends
  its signed webhook to the service; the time until `GET /api/simpro/customers` shows the
  new count (p50, p99 over the events);
- refresh cost: a full scan, then incremental syncs with 0%, 1% and 10% of the invoices
  changed (moved to another customer) since the last sync: requests and seconds each.

The service runs in process (ASGI) with a real redis-server; the simulator's latency and
rate limit apply to every Simpro request, webhooks are delivered into the app directly.
Run: `.venv/bin/python -m bench.realtime [--record]`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from bench.record import record
from simpro_counter.settings import Settings
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.store import EmbeddedRedis
from simpro_counter.web import create_app

SECRET = "bench-webhook-secret"
TOKEN = "bench-admin-token"


class _LateApp(httpx.AsyncBaseTransport):
    app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


async def _count(client: httpx.AsyncClient) -> int | None:
    body: dict[str, Any] = (await client.get("/api/simpro/customers")).json()
    return body["count"]  # type: ignore[no-any-return]


async def run(invoices: int, events: int, redis_url: str) -> dict[str, Any]:
    late = _LateApp()
    simulator = Simulator(
        SimulatorConfig(
            invoices=invoices, customers=invoices // 3, seed=5, rate=10, latency=0.5,
            webhook_url="http://service/api/simpro/webhooks", webhook_secret=SECRET,
        ),
        webhook_transport=late,
    )  # fmt: skip
    settings = Settings(
        simpro_base_url="https://simpro.test", simpro_api_key=SecretStr("demo-key"),
        redis_url=redis_url, key_prefix="bench", admin_token=SecretStr(TOKEN),
        webhook_secret=SecretStr(SECRET), refresh_check_interval=3600,
    )  # fmt: skip
    app = create_app(settings, simpro_transport=simulator.transport())
    late.app = app
    auth = {"Authorization": f"Bearer {TOKEN}"}
    results: dict[str, Any] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client,
    ):
        await _until(client, lambda count: count is not None)  # the start-up refresh
        for _ in range(3000):  # ... which still records its status after publishing
            status = (await client.get("/api/simpro/customers/refresh")).json()
            if not status["isRefreshing"]:
                break
            await asyncio.sleep(0.01)

        simulator.stats.reset()
        started = time.perf_counter()
        full = (await client.post("/api/simpro/customers/refresh", headers=auth)).json()
        assert "count" in full, full
        results["full"] = (simulator.stats.total, time.perf_counter() - started, full["count"])

        invoiced = {
            simulator.dataset.invoice(i).customer_id for i in simulator.dataset.invoice_ids()
        }
        fresh = sorted(set(simulator.dataset.customer_ids()) - invoiced)
        latencies = []
        for customer in fresh[:events]:
            before = await _count(client)
            simulator.dataset.add_invoice(customer_id=customer)
            sent = time.perf_counter()
            await simulator.webhooks.flush()
            await _until(client, _changed_from(before))
            latencies.append(time.perf_counter() - sent)
        results["latencies"] = latencies

        ids = simulator.dataset.invoice_ids()
        customers = simulator.dataset.customer_ids()
        for share in (0.0, 0.01, 0.10):
            for index in range(int(len(ids) * share)):
                simulator.dataset.update_invoice(
                    ids[index * 7 % len(ids)], customer_id=customers[index % len(customers)]
                )
            await asyncio.sleep(1.1)  # If-Modified-Since has one-second resolution
            simulator.stats.reset()
            started = time.perf_counter()
            synced = (
                await client.post("/api/simpro/customers/refresh?mode=incremental", headers=auth)
            ).json()
            results[f"incremental {share:.0%}"] = (
                simulator.stats.total,
                time.perf_counter() - started,
                synced["count"],
            )
            assert synced["count"] == simulator.truth().customers, "incremental was not exact"
    return results


async def _until(client: httpx.AsyncClient, done: Callable[[int | None], bool]) -> None:
    """Poll the counter (every 2 ms) until `done(count)`."""
    for _ in range(30_000):
        if done(await _count(client)):
            return
        await asyncio.sleep(0.002)
    raise TimeoutError("the counter never reached the expected state")


def _changed_from(before: int | None) -> Callable[[int | None], bool]:
    return lambda count: count != before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=25_000)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedRedis(Path(data_dir)) as redis:
        results = asyncio.run(run(args.invoices, args.events, redis.url))
    latencies = sorted(results["latencies"])
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    full_requests, full_seconds, _ = results["full"]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, Python "
        f"{platform.python_version()}: {args.invoices:,} invoices, simulator at 10 req/s and "
        "0.5 s per answer.",
        "",
        f"Event → visible count over {len(latencies)} webhook events (simulator → signed "
        f"webhook → queue → fetch the invoice → ledger → API): **p50 {p50:.0f} ms, p99 "
        f"{p99:.0f} ms** (one Simpro request of 0.5 s each).",
        "",
        "| refresh | requests | seconds | vs full scan |",
        "|---|---:|---:|---:|",
        f"| full scan | {full_requests} | {full_seconds:.2f} | 1.00 |",
    ]
    for key in ("incremental 0%", "incremental 1%", "incremental 10%"):
        requests, seconds, _ = results[key]
        lines.append(
            f"| {key} of invoices changed | {requests} | {seconds:.2f} | "
            f"{seconds / full_seconds:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.record:
        record("bench/realtime.py", text)


if __name__ == "__main__":
    main()
