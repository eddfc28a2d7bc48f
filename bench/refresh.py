"""Benchmark: a full scan against the rate-limit bound, under both shapes of rate limiter.

The simulator holds 25,000 invoices, allows 10 requests/second and answers each request
after 0.5 s, as a busy Simpro build would. Simpro does not publish how it counts its
limit, so the scan runs against both shapes the simulator knows:

- a token bucket (a burst of 10, refilled at 10/s);
- a sliding window (at most 10 requests in any one-second window, 429 on excess), once as
  shipped and once with the limiter's safety margin off, to show what the margin costs;
- the original approach, one page after another (one request in flight), for scale;
- the bound: pages ÷ rate, the fastest any client can read every page.

Run with `make bench` (or `.venv/bin/python -m bench.refresh --record` to update
docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import platform
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from bench.record import record
from simpro_counter.scan import ScanReport, scan_customers
from simpro_counter.simpro import SimproClient, SimproConfig
from simpro_counter.simpro.limiter import DEFAULT_MARGIN, RateLimiter
from simpro_counter.simulator import SimulatorConfig, serve
from simpro_counter.simulator.config import LimiterShape


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    report: ScanReport | None = None
    rate_limited: int = 0  # 429 answers


async def _scan(config: SimproConfig, margin: float) -> tuple[ScanReport, float, int]:
    limiter = RateLimiter(config.rate_limit, margin=margin)
    async with SimproClient(config, limiter=limiter) as client:
        started = time.perf_counter()
        report = await scan_customers(client)
        return report, time.perf_counter() - started, client.stats.by_status[429]


@dataclass(frozen=True)
class Served:
    url: str
    invoices: int
    customers: int  # the truth


@contextmanager
def _simulator_process(config: SimulatorConfig) -> Iterator[Served]:
    """The simulator in a process of its own, as a build is a server of its own.

    In this process it would share the GIL with the client: every page the client
    parses would delay the simulator's clock of arrivals, and so its rate limit, by
    milliseconds that a real server does not see.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = multiprocessing.get_context("spawn").Process(
        target=serve, args=(config, "127.0.0.1", port), daemon=True
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                truth = httpx.get(f"{url}/__truth", timeout=5).json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or not process.is_alive():
                    raise RuntimeError(f"the simulator did not start at {url}") from None
                time.sleep(0.1)
        yield Served(url, int(truth["invoices"]), int(truth["customers"]))
    finally:
        process.terminate()
        process.join(10)


def _run(
    sim_config: SimulatorConfig,
    rate: float,
    runs: list[tuple[str, int, float]],
) -> tuple[list[Row], Served, SimproConfig]:
    """Scan the simulator once per (name, max_in_flight, margin) in `runs`."""
    rows = []
    with _simulator_process(sim_config) as served:
        config = SimproConfig(
            base_url=served.url, api_key=SecretStr(sim_config.api_key), rate_limit=rate
        )
        for name, in_flight, margin in runs:
            time.sleep(1.5)  # a fresh window (and a full bucket) for every run
            report, seconds, limited = asyncio.run(
                _scan(replace(config, max_in_flight=in_flight), margin)
            )
            assert report.count == served.customers, "the benchmark's scan was not exact"
            rows.append(Row(name, seconds, report, limited))
    return rows, served, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=25_000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--record", action="store_true", help="write docs/performance.md")
    args = parser.parse_args()

    def simulator(shape: LimiterShape) -> SimulatorConfig:
        return SimulatorConfig(
            invoices=args.invoices,
            customers=args.invoices // 6,
            seed=42,
            rate=args.rate,
            latency=args.latency,
            limiter=shape,
        )

    margin_ms = f"{DEFAULT_MARGIN * 1000:g} ms"
    in_flight = SimproConfig(base_url="http://unused").max_in_flight
    sliding, truth, config = _run(
        simulator("sliding"),
        args.rate,
        [
            ("scan, sliding-window build", in_flight, DEFAULT_MARGIN),
            ("scan, sliding-window build, no margin", in_flight, 0.0),
        ],
    )
    bucket, _, _ = _run(
        simulator("bucket"),
        args.rate,
        [
            ("scan, token-bucket build", in_flight, DEFAULT_MARGIN),
            ("one page after another (original), token-bucket build", 1, DEFAULT_MARGIN),
        ],
    )
    pages = math.ceil(truth.invoices / config.page_size)
    bound_s = pages / args.rate
    rows = [Row("rate-limit bound (pages ÷ rate)", bound_s), *sliding, *bucket]

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, "
        f"Python {platform.python_version()}: {truth.invoices:,} invoices, {pages} pages of "
        f"{config.page_size}, simulator at {args.rate:g} req/s and {args.latency:g} s per "
        f"answer; limiter margin {margin_ms}; every count = truth {truth.customers:,}.",
        "",
        "| approach | seconds | requests | retries | 429s | share of the bound |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        report = row.report
        requests = "-" if report is None else str(report.requests)
        retries = "-" if report is None else str(report.retries)
        limited = "-" if report is None else str(row.rate_limited)
        lines.append(
            f"| {row.name} | {row.seconds:.2f} | {requests} | {retries} | {limited} | "
            f"{bound_s / row.seconds:.1%} |"
        )
    shipped_sliding, no_margin, shipped_bucket, sequential = sliding + bucket
    assert shipped_sliding.report is not None
    # A client that never sends more than `limit` requests in a window cannot start its
    # k-th request before (k - 1) // limit windows have passed, and the scan ends one
    # answer after its last request.
    limit = max(1, math.floor(args.rate))
    windows = (shipped_sliding.report.requests - 1) // limit
    best_strict = windows * (1.0 + DEFAULT_MARGIN) + args.latency
    best_no_margin = windows * 1.0 + args.latency
    lines += [
        "",
        f"Scan at **{bound_s / shipped_sliding.seconds:.1%} of the rate-limit bound with "
        f"{shipped_sliding.rate_limited} 429s** against a sliding-window build and "
        f"**{bound_s / shipped_bucket.seconds:.1%}** against a token bucket; without the "
        f"{margin_ms} margin the sliding-window build answered {no_margin.rate_limited} "
        f"requests with 429 and the scan took {no_margin.seconds:.2f} s. "
        f"**{sequential.seconds / shipped_bucket.seconds:.1f} times faster** than paging "
        "one page after another.",
        "",
        f"No limiter that keeps to {limit} requests in any second can do better here than "
        f"{windows} windows and one answer: {best_strict:.2f} s with the margin "
        f"({bound_s / best_strict:.1%} of the bound), {best_no_margin:.2f} s without "
        f"({bound_s / best_no_margin:.1%}).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        record("bench/refresh.py", text)


if __name__ == "__main__":
    main()
