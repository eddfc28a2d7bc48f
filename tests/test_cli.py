"""The `simpro-counter` command, run as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from simpro_counter.simulator import RunningSimulator
from tests.service_fixtures import free_port, stop_process, wait_until_counted

CLI = [sys.executable, "-m", "simpro_counter"]


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMPRO_")}
    env.update(values)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        CLI + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_refresh_json_prints_the_exact_count(
    live_simulator: RunningSimulator, tmp_path: Path
) -> None:
    env = _env(SIMPRO_BASE_URL=live_simulator.url, SIMPRO_API_KEY="demo-key")
    result = _run(["refresh", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    truth = live_simulator.simulator.truth()
    assert report["count"] == truth.customers
    assert report["totalInvoices"] == truth.invoices
    assert {"pages", "requests", "retries", "duration"} <= set(report)
    assert isinstance(report["duration"], float)
    assert report["storage"] == "redis"  # published to the (embedded) store
    assert (tmp_path / ".simpro-counter" / "appendonlydir").exists() or any(
        (tmp_path / ".simpro-counter").glob("*.aof*")
    )


def test_refresh_without_configuration_fails_with_one_line(tmp_path: Path) -> None:
    result = _run(["refresh"], _env(), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SIMPRO_BASE_URL is not set" in lines[0]
    assert "simpro-counter demo" in lines[0]


def test_refresh_with_a_wrong_key_fails_fast(
    live_simulator: RunningSimulator, tmp_path: Path
) -> None:
    env = _env(SIMPRO_BASE_URL=live_simulator.url, SIMPRO_API_KEY="wrong")
    started = time.monotonic()
    result = _run(["refresh", "--json"], env, tmp_path)
    assert result.returncode == 1
    assert "401 Unauthorized" in result.stderr
    assert "check SIMPRO_API_KEY" in result.stderr
    assert "wrong" not in result.stderr  # the key itself is never printed
    assert time.monotonic() - started < 30


@pytest.fixture
def simulate_process(tmp_path: Path) -> Iterator[str]:
    """`simpro-counter simulate` as its own process, stopped by its PID."""
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "simulate", "--port", str(port), "--invoices", "800", "--rate", "0"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/__truth", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("simpro-counter simulate did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        stop_process(process, signal.SIGINT)


def test_simulate_serves_a_build_that_refresh_counts(simulate_process: str, tmp_path: Path) -> None:
    truth = httpx.get(f"{simulate_process}/__truth").json()
    assert truth["invoices"] == 800
    env = _env(SIMPRO_BASE_URL=simulate_process, SIMPRO_API_KEY="demo-key")
    result = _run(["refresh", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == truth["customers"]


def test_demo_serves_the_exact_count_and_refresh_shares_its_redis(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    demo = subprocess.Popen(
        [*CLI, "demo", "--port", str(port), "--simulator-port", str(sim_port),
         "--invoices", "900", "--latency", "0.01", "--fault-rate", "0.1", "--activity", "0"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=_env(ADMIN_TOKEN="demo-token"),
    )  # fmt: skip
    base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                body = httpx.get(f"{base}/api/simpro/customers", timeout=2).json()
                if body["count"] is not None:
                    break
            except httpx.TransportError:
                pass
            assert demo.poll() is None, "the demo exited"
            assert time.monotonic() < deadline, "the demo produced no count within 60 s"
            time.sleep(0.2)
        wait_until_counted(base)  # the refresh that made it has finished too
        truth = httpx.get(f"{sim}/__truth").json()
        assert body["count"] == truth["customers"]

        refreshed = httpx.post(
            f"{base}/api/simpro/customers/refresh",
            headers={"Authorization": "Bearer demo-token"},
            timeout=60,
        )
        assert refreshed.status_code == 200

        # Every endpoint of the running demo passes `check`.
        checked = _run(["check", "--url", base], _env(ADMIN_TOKEN="demo-token"), tmp_path)
        assert checked.returncode == 0, checked.stdout
        assert " 0 failed" in checked.stdout

        # `refresh` on the same data dir publishes through the running demo's Redis.
        env = _env(SIMPRO_BASE_URL=sim, SIMPRO_API_KEY="demo-key", DATA_DIR=".simpro-counter/demo")
        result = _run(["refresh", "--json"], env, tmp_path)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert "running service" in report["redis"]
        truth = httpx.get(f"{sim}/__truth").json()
        assert (report["count"], report["invoices"]) == (truth["customers"], truth["invoices"])
        assert (report["revenue"], report["currency"]) == (truth["revenue"], "AUD")

        status = _run(["status", "--url", base], _env(COLUMNS="160"), tmp_path)
        assert status.returncode == 0, status.stderr
        for metric in ("customers", "invoices", "jobs", "quotes"):
            assert re.search(rf"{metric}\s+{truth[metric]:,}\s", status.stdout), status.stdout
        assert f"{Decimal(truth['revenue']):,.2f} AUD" in status.stdout
        assert re.search(r"Redis: \S+", status.stdout), status.stdout  # where, never a password
    finally:
        stop_process(demo, signal.SIGINT, timeout=20)
    assert demo.returncode == 0


def test_a_new_demo_run_never_serves_the_previous_runs_values(tmp_path: Path) -> None:
    """Each run simulates a new build: what the last one counted is not this one's."""
    seen = []
    for seed in ("7", "8"):
        port, sim_port = free_port(), free_port()
        banner_file = tmp_path / f"banner-{seed}.txt"
        with banner_file.open("w") as out:
            demo = subprocess.Popen(
                [*CLI, "demo", "--port", str(port), "--simulator-port", str(sim_port),
                 "--invoices", "400", "--latency", "0.05", "--fault-rate", "0",
                 "--activity", "0", "--seed", seed],
                cwd=tmp_path, stdout=out, stderr=subprocess.DEVNULL,
                env=_env(ADMIN_TOKEN="demo-token"),
            )  # fmt: skip
        base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
        try:
            deadline = time.monotonic() + 60
            first = None
            while first is None:
                try:
                    first = httpx.get(f"{base}/api/simpro/customers", timeout=2).json()
                except httpx.TransportError:
                    assert demo.poll() is None, "the demo exited"
                    assert time.monotonic() < deadline, "the demo did not answer within 60 s"
                    time.sleep(0.1)
            truth = httpx.get(f"{sim}/__truth").json()["customers"]
            assert first["count"] in (None, truth)  # never the previous run's count
            assert wait_until_counted(base) == truth
            seen.append(truth)
        finally:
            stop_process(demo, signal.SIGINT, timeout=20)
        banner = banner_file.read_text()
        # The banner's command lines are whole, even written to a pipe (80 columns).
        # The token goes in the environment, never on the command line.
        assert "Check       ADMIN_TOKEN=demo-token simpro-counter check --url http" in banner
        assert "--token" not in banner
    assert seen[0] != seen[1]  # two different builds, so the check above means something
