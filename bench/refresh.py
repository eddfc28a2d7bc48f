"""Benchmark: a full scan against the rate-limit bound and against sequential paging.

The simulator holds 25,000 invoices, allows 10 requests/second and answers each request
after 0.5 s, as a busy Simpro build would. In the same run it measures:

- the scan as shipped (concurrent pages under the token bucket);
- the original approach: one page after another (the same client, one request in flight);
- the bound: pages ÷ rate, the fastest any client can read every page.

Run with `make bench` (or `.venv/bin/python -m bench.refresh --record` to update
docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import time
from dataclasses import replace
from datetime import UTC, datetime

from bench.record import record
from simpro_counter.scan import ScanReport, scan_customers
from simpro_counter.simpro import SimproClient, SimproConfig
from simpro_counter.simulator import SimulatorConfig, running_simulator


async def _scan(config: SimproConfig) -> tuple[ScanReport, float]:
    async with SimproClient(config) as client:
        started = time.perf_counter()
        report = await scan_customers(client)
        return report, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=25_000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--record", action="store_true", help="write docs/performance.md")
    args = parser.parse_args()

    sim_config = SimulatorConfig(
        invoices=args.invoices,
        customers=args.invoices // 6,
        seed=42,
        rate=args.rate,
        latency=args.latency,
    )
    with running_simulator(sim_config) as running:
        truth = running.simulator.truth()
        config = SimproConfig(
            base_url=running.url, api_key=sim_config.api_key, rate_limit=args.rate
        )
        ours, ours_s = asyncio.run(_scan(config))
        time.sleep(1.5)  # let the simulator's bucket refill between the two runs
        sequential, sequential_s = asyncio.run(_scan(replace(config, max_in_flight=1)))

    pages = math.ceil(truth.invoices / config.page_size)
    bound_s = pages / args.rate
    rows = [
        ("rate-limit bound (pages ÷ rate)", bound_s, None, None),
        ("simpro-counter scan", ours_s, ours.requests, ours.retries),
        (
            "one page after another (original)",
            sequential_s,
            sequential.requests,
            sequential.retries,
        ),
    ]
    for report in (ours, sequential):
        assert report.count == truth.customers, "the benchmark's scan was not exact"

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, "
        f"Python {platform.python_version()}: {truth.invoices:,} invoices, {pages} pages of "
        f"{config.page_size}, simulator at {args.rate:g} req/s and {args.latency:g} s per "
        f"answer; count {ours.count:,} = truth {truth.customers:,}.",
        "",
        "| approach | seconds | requests | retries | share of the bound |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, seconds, requests, retries in rows:
        lines.append(
            f"| {name} | {seconds:.2f} | {requests if requests is not None else '-'} | "
            f"{retries if retries is not None else '-'} | {bound_s / seconds:.0%} |"
        )
    lines += [
        "",
        f"Scan at **{bound_s / ours_s:.0%} of the rate-limit bound** (target ≥ 90%), "
        f"**{sequential_s / ours_s:.1f} times faster** than paging one page after another.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        record("bench/refresh.py", text)


if __name__ == "__main__":
    main()
