"""Soak: the chaos suite's phases, cycle after cycle, for minutes.

The same run as `tests/chaos/` (`tests.chaos.scenario.run_chaos`): a real service
process under reads, signed webhooks and admin refreshes while its Redis is SIGKILLed,
restarted from an AOF cut short, Simpro fails and the webhook backlog fills. It repeats
whole cycles until `--seconds` have passed (10 minutes by default), settles, and prints
the same figures the tests assert on: failed reads, wrong values, lost deliveries, the
final counts against the truth and the service's RSS over the run.

Run: `.venv/bin/python -m bench.soak [--seconds N]`. Exits 1 when a property fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

from tests.chaos.scenario import ChaosPlan, ChaosReport, run_chaos

# The bound tests/chaos asserts for about a minute; a soak allows twice as much for its
# longer run (more near-cache and history churn, allocator fragmentation).
RSS_GROWTH_BOUND_KIB = 96 * 1024


def problems(report: ChaosReport) -> list[str]:
    """Which of the suite's properties the run broke (empty: none)."""
    found = []
    if report.reads.failed:
        found.append(f"{report.reads.failed} failed reads")
    if report.reads.wrong:
        found.append(f"{report.reads.wrong} wrong values")
    if report.deliveries_lost:
        found.append(f"{len(report.deliveries_lost)} lost deliveries")
    if report.settled_values != report.final_truth:
        found.append(f"webhooks settled at {report.settled_values}, not {report.final_truth}")
    if report.final_values != report.final_truth:
        found.append(f"final values {report.final_values}, not {report.final_truth}")
    if report.rss_growth_kib >= RSS_GROWTH_BOUND_KIB:
        found.append(f"RSS grew {report.rss_growth_kib / 1024:.1f} MiB")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to cycle")
    args = parser.parse_args()
    if args.seconds < 0:
        parser.error("--seconds must be >= 0")
    print(
        f"soak: {args.seconds:g} s of chaos cycles on {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        report = run_chaos(Path(workdir), ChaosPlan(seconds=args.seconds))
    print("\n".join(report.lines()))
    phases: dict[str, list[float]] = {}
    for name, seconds in report.phases:
        phases.setdefault(name, []).append(seconds)
    for name, runs in phases.items():
        print(f"  phase {name:24} {len(runs):3} x, {sum(runs) / len(runs):5.1f} s on average")
    found = problems(report)
    print("soak: OK" if not found else "soak: FAILED: " + "; ".join(found))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
