"""Benchmark: what a full scan and a 1 % incremental sync cost as the build grows.

For each size (10,000 to 1,000,000 invoices, one customer per 10 invoices) the built-in
simulator serves the build over real HTTP with its rate limit lifted (rate=0, no faults,
no latency), so only our side is measured; the client's own limit is set far above what
it can reach. Each row measures, in the same run:

- **peak RSS of the scanning process**: the refresh runs in a child process (this module's
  `--worker`, which runs `refresh_all` as `simpro-counter refresh` does) that reports its
  own `VmHWM` from /proc/self/status at the end, and after its imports (the baseline).
  Not `getrusage`: on Linux a child's `ru_maxrss` starts from its parent's peak at fork
  time (kept across exec), and the parent here holds the simulated build;
- **Redis bytes per invoice**: `INFO memory` `used_memory` of a redis-server this bench
  starts itself (the embedded one, on its unix socket), before the full scan (flushed) and
  after, divided by the invoices;
- **seconds** of the full scan (`refresh_all(mode="full")`, inside the child), and the
  CPU seconds meanwhile of the child and of redis-server (`INFO cpu`): unlike wall time
  they do not grow when other work shares the machine;
- **seconds of an incremental sync** after 1 % of invoices changed (every 100th invoice
  re-priced in the simulator), in a second child.

Both refreshes are checked exact against the simulator's truth. The simulator answers
from this process (one uvicorn thread), so at large sizes it shares the machine's cores
with the scan; its page cost does not grow with the build.

Run: `.venv/bin/python -m bench.scale [--sizes 10000,100000] [--record]` (default: 10k,
100k, 300k and 1M; the 1M row takes a few minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import redis

from bench.record import record
from simpro_counter.refresh import RefreshMode
from simpro_counter.simulator import Simulator, SimulatorConfig, Truth, running_simulator
from simpro_counter.store import EmbeddedRedis

DEFAULT_SIZES = (10_000, 100_000, 300_000, 1_000_000)
CHANGED_SHARE = 100  # every 100th invoice changes before the incremental sync: 1 %
ROOT = Path(__file__).resolve().parent.parent
WORKER_TIMEOUT_SECONDS = 3_600.0
MB = 1024 * 1024
MODES: dict[str, RefreshMode] = {"full": "full", "incremental": "incremental"}


@dataclass(frozen=True)
class Refresh:
    """One refresh in a child process, as the child reported it and the parent saw it."""

    seconds: float  # the refresh itself, timed inside the child
    cpu_seconds: float  # the child's CPU time during the refresh (steady under load)
    peak_rss: int  # bytes, the child's peak (VmHWM at its end)
    baseline_rss: int  # bytes, the child's peak after imports, before the refresh
    customers: int
    invoices: int
    revenue_cents: int
    requests: int  # Simpro requests of this refresh
    synced: int | None  # invoices an incremental sync applied; None for a full scan


@dataclass(frozen=True)
class Row:
    invoices: int
    generate_seconds: float
    full: Refresh
    redis_bytes: int  # used_memory after the full scan minus before
    changed: int
    incremental: Refresh
    full_redis_cpu: float  # redis-server's CPU seconds during the full scan
    sync_redis_cpu: float  # and during the incremental sync


# -- the child ---------------------------------------------------------------------------


async def _refresh(mode: RefreshMode) -> dict[str, object]:
    # Imported here so the baseline RSS below includes exactly what a refresh imports.
    from simpro_counter.settings import load_settings
    from simpro_counter.wiring import open_counting

    settings = load_settings()
    async with open_counting(settings) as (counting, _where):
        started, cpu_started = time.perf_counter(), time.process_time()
        values = await counting.refresher.refresh_all(mode=mode)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "customers": values["customers"].value,
        "invoices": values["invoices"].value,
        "revenue_cents": values["revenue"].value,
        "details": values["customers"].details,
    }


def peak_rss() -> int:
    """This process's peak resident set size in bytes (VmHWM: this exec's memory only)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")


def worker(mode: RefreshMode) -> None:
    """Run one refresh against the build and Redis the environment names; print JSON."""
    import simpro_counter.wiring  # noqa: F401 - the imports belong to the baseline

    # The parent keeps this process's stderr in a log and shows it if the refresh fails.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    baseline = peak_rss()
    result = asyncio.run(_refresh(mode))
    report = {**result, "baseline_rss": baseline, "peak_rss": peak_rss()}
    sys.stdout.write(json.dumps(report) + "\n")


# -- the parent --------------------------------------------------------------------------


def _run_worker(mode: RefreshMode, env: dict[str, str], cwd: Path) -> Refresh:
    """Run `--worker mode` in a child process; what it reports."""
    log = cwd / f"worker-{mode}.log"
    with log.open("wb") as stderr:
        child = subprocess.run(
            [sys.executable, "-m", "bench.scale", "--worker", mode],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=cwd,
            timeout=WORKER_TIMEOUT_SECONDS,
            check=False,
        )
    if child.returncode != 0:
        raise RuntimeError(f"{mode} refresh failed ({child.returncode}):\n{log.read_text()}")
    report = json.loads(child.stdout)
    details = report["details"]
    return Refresh(
        seconds=float(report["seconds"]),
        cpu_seconds=float(report["cpu_seconds"]),
        peak_rss=int(report["peak_rss"]),
        baseline_rss=int(report["baseline_rss"]),
        customers=int(report["customers"]),
        invoices=int(report["invoices"]),
        revenue_cents=int(report["revenue_cents"]),
        requests=int(
            details["lastSync"]["requests"] if mode == "incremental" else details["requests"]
        ),
        synced=int(details["lastSync"]["changed"]) if mode == "incremental" else None,
    )


def _check_exact(what: str, refresh: Refresh, truth: Truth) -> None:
    got = (refresh.customers, refresh.invoices, refresh.revenue_cents)
    want = (truth.customers, truth.invoices, int(truth.revenue.scaleb(2)))
    if got != want:
        raise AssertionError(f"{what} was not exact: {got} != truth {want}")


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _redis_cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _change_one_percent(simulator: Simulator) -> int:
    """Re-price every 100th invoice (a change every counter sees: revenue moves)."""
    dataset = simulator.dataset
    changed = dataset.invoice_ids()[::CHANGED_SHARE]
    for invoice_id in changed:
        cents = dataset.invoice(invoice_id).ex_tax + 1
        dataset.update_invoice(invoice_id, total_ex_tax=Decimal(cents).scaleb(-2))
    return len(changed)


def _progress(text: str) -> None:
    sys.stderr.write(f"[{datetime.now(UTC):%H:%M:%S}] {text}\n")
    sys.stderr.flush()


def measure(invoices: int, server: EmbeddedRedis, workdir: Path) -> Row:
    """One row: build the simulator, full scan, change 1 %, incremental sync."""
    _progress(f"{invoices:,} invoices: generating the build")
    started = time.perf_counter()
    config = SimulatorConfig(invoices=invoices, customers=max(1, invoices // 10), seed=42, rate=0)
    with running_simulator(config) as running, redis.Redis.from_url(server.url) as client:
        generate_seconds = time.perf_counter() - started
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SIMPRO_BASE_URL": running.url,
            "SIMPRO_API_KEY": config.api_key,
            "SIMPRO_RATE_LIMIT": "100000",  # lifted: only our side is measured
            "REDIS_URL": server.url,
            "DATA_DIR": str(workdir / "data"),
        }
        client.flushall()
        before, cpu_before = _used_memory(client), _redis_cpu(client)
        _progress(f"{invoices:,} invoices: generated in {generate_seconds:.1f} s; full scan")
        full = _run_worker("full", env, workdir)
        full_redis_cpu = _redis_cpu(client) - cpu_before
        _check_exact("the full scan", full, running.simulator.truth())
        redis_bytes = _used_memory(client) - before
        _progress(f"{invoices:,} invoices: full scan {full.seconds:.1f} s; changing 1 %")
        changed = _change_one_percent(running.simulator)
        _progress(f"{invoices:,} invoices: {changed:,} changed; incremental sync")
        cpu_before = _redis_cpu(client)
        incremental = _run_worker("incremental", env, workdir)
        sync_redis_cpu = _redis_cpu(client) - cpu_before
        _check_exact("the incremental sync", incremental, running.simulator.truth())
        if incremental.synced is None or incremental.synced < changed:
            raise AssertionError(f"the sync applied {incremental.synced} of {changed} changes")
        _progress(f"{invoices:,} invoices: incremental sync {incremental.seconds:.2f} s")
    return Row(
        invoices,
        generate_seconds,
        full,
        redis_bytes,
        changed,
        incremental,
        full_redis_cpu,
        sync_redis_cpu,
    )


def _spread(values: list[float], unit: str, digits: int = 0) -> str:
    """'a-b unit per row', and whether that makes the cost a straight line (within 1.5x)."""
    low, high = min(values), max(values)
    if high <= 1.5 * low:
        shape = "linear"
    else:
        faster = values[-1] > values[0]
        shape = f"{'faster' if faster else 'slower'} than linear"
        shape += f": {values[0]:.{digits}f} first, {values[-1]:.{digits}f} last"
    return f"{low:.{digits}f}-{high:.{digits}f} {unit} ({shape})"


def _growth(rows: list[Row]) -> str:
    """How each cost grows with the build, read off the rows (not assumed)."""
    if len(rows) < 2:
        return ""
    pairs = list(itertools.pairwise(rows))
    rss_slopes = [(b.full.peak_rss - a.full.peak_rss) / (b.invoices - a.invoices) for a, b in pairs]
    redis_each = [row.redis_bytes / row.invoices for row in rows]
    # CPU time, not wall time: the machine may be shared, and our CPU does not wait on it.
    scan_each = [(row.full.cpu_seconds + row.full_redis_cpu) / row.invoices * 1e6 for row in rows]
    sync_each = [
        (row.incremental.cpu_seconds + row.sync_redis_cpu) / row.changed * 1e3 for row in rows
    ]
    return (
        f"How each cost grows, from {rows[0].invoices:,} to {rows[-1].invoices:,} invoices: "
        f"the scanning process's peak RSS by {_spread(rss_slopes, 'bytes per added invoice')} "
        f"over a baseline of {rows[0].full.baseline_rss / MB:.0f} MB; Redis holds "
        f"{_spread(redis_each, 'bytes per invoice')}; the full scan takes "
        f"{_spread(scan_each, 'µs of CPU per invoice')}; the incremental sync takes "
        f"{_spread(sync_each, 'ms of CPU per changed invoice', 1)} (CPU: the scanning "
        "process's and redis-server's)."
    )


def table(rows: list[Row]) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()} "
        f"({os.cpu_count()} cores, simulator and scan on the same machine), Python "
        f"{platform.python_version()}: one customer per 10 invoices, simulator rate limit "
        "lifted, both refreshes exact against the simulator's truth.",
        "",
        "| invoices | build generated s | full scan s (CPU s: ours + Redis; requests) "
        "| peak RSS MB (baseline) | Redis B/invoice | 1 % changed "
        "| incremental sync s (CPU s: ours + Redis; requests) | sync peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.invoices:,} | {row.generate_seconds:.1f} "
            f"| {row.full.seconds:.1f} ({row.full.cpu_seconds:.1f} + {row.full_redis_cpu:.1f}; "
            f"{row.full.requests:,}) "
            f"| {row.full.peak_rss / MB:.0f} ({row.full.baseline_rss / MB:.0f}) "
            f"| {row.redis_bytes / row.invoices:.0f} | {row.changed:,} "
            f"| {row.incremental.seconds:.2f} ({row.incremental.cpu_seconds:.2f} + "
            f"{row.sync_redis_cpu:.2f}; {row.incremental.requests:,}) "
            f"| {row.incremental.peak_rss / MB:.0f} |"
        )
    growth = _growth(rows)
    return "\n".join([*lines, "", growth] if growth else lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(size) for size in DEFAULT_SIZES),
        help="comma-separated invoice counts, ascending",
    )
    parser.add_argument("--record", action="store_true", help="write docs/performance.md")
    parser.add_argument("--worker", choices=tuple(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(MODES[args.worker])
        return
    sizes = sorted(int(size.replace("_", "")) for size in args.sizes.split(",") if size)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        server = EmbeddedRedis(workdir / "redis")
        server.start()
        try:
            for size in sizes:
                rows.append(measure(size, server, workdir))
        except BaseException:
            if rows:  # what was measured before the failure is still worth seeing
                sys.stderr.write(f"measured before the failure:\n{table(rows)}\n")
            raise
        finally:
            server.stop()
    text = table(rows)
    print(text)
    if args.record:
        record("bench/scale.py", text)


if __name__ == "__main__":
    main()
