"""`simpro-counter check` against the real service: simulator, redis-server, `serve` process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from simpro_counter.check import CheckResult, check_deployment, render, run_checks
from simpro_counter.simulator import RunningSimulator, SimulatorConfig, running_simulator
from simpro_counter.store import EmbeddedRedis
from tests.service_fixtures import (
    ADMIN_TOKEN,
    ServiceProcess,
    free_port,
    service_env,
    service_process,
    wait_for_count,
    wait_until_counted,
)

TOKEN = ADMIN_TOKEN
BACKGROUND = "POST /api/simpro/customers/refresh?background=true"
FOREGROUND = "POST /api/simpro/customers/refresh"


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(invoices=1500, customers=350, seed=13, rate=0, latency=0.01)
    with running_simulator(config) as running:
        yield running


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module's own (each service gets its own KEY_PREFIX in it)."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), port=free_port()) as server:
        yield server.url


def _env(simulator: RunningSimulator, redis_url: str, token: str | None) -> dict[str, str]:
    return service_env(simulator.url, prefix="check", redis_url=redis_url, admin_token=token)


@pytest.fixture(scope="module")
def service(
    simulator: RunningSimulator, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One deployment with ADMIN_TOKEN, shared by the tests that do not change it."""
    with service_process(_env(simulator, redis_url, TOKEN), tmp_path_factory.mktemp("svc")) as svc:
        yield svc


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


def _failures(results: list[CheckResult]) -> list[CheckResult]:
    return [result for result in results if not result.ok]


async def test_a_healthy_deployment_passes_every_check_with_the_token(
    service: ServiceProcess, simulator: RunningSimulator
) -> None:
    results = await run_checks(service.url, TOKEN, wait=30)
    assert _failures(results) == []
    assert not any(result.skipped for result in results)
    names = _by_name(results)
    assert len(names) == 18
    assert names[BACKGROUND].detail.startswith(("202", "409"))
    sim_truth = simulator.simulator.truth()
    assert names["GET /api/simpro/jobs"].detail == f"{sim_truth.jobs:,} jobs from redis"
    assert names["GET /api/simpro/revenue"].detail == f"{sim_truth.revenue:,.2f} AUD from redis"
    assert names["GET /api/simpro/customers/history"].detail.endswith(
        f"{sim_truth.customers:,} customers; CSV too"
    )
    assert names["GET /readyz"].detail == "ready: redis ok, simpro ok (storage redis)"
    truth = simulator.simulator.truth().customers
    assert names[FOREGROUND].detail.startswith(f"count {truth:,} from 1,500 invoices")
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{service.url}/api/simpro/customers")).json()
    assert body["count"] == truth
    assert all(TOKEN not in result.detail for result in results)


async def test_without_a_token_the_admin_checks_are_skipped(service: ServiceProcess) -> None:
    results = await run_checks(service.url, None, wait=30)
    assert _failures(results) == []
    skipped = [result for result in results if result.skipped]
    assert [result.name for result in skipped] == [BACKGROUND, FOREGROUND]
    assert all(
        result.detail == "skipped: no ADMIN_TOKEN or --token-file given" for result in skipped
    )
    names = _by_name(results)
    assert names[f"{FOREGROUND} without a token"].detail.startswith("401")
    assert names[f"{FOREGROUND} with a wrong token"].detail.startswith("401")


def _check_command_exists() -> bool:
    from simpro_counter.cli import app

    return any(
        (command.name or getattr(command.callback, "__name__", "")) == "check"
        for command in app.registered_commands
    )


def test_a_wrong_token_fails_with_exit_code_1(service: ServiceProcess, tmp_path: Path) -> None:
    wrong = "wrong-token-7c1d"
    if _check_command_exists():
        env = {**os.environ, "ADMIN_TOKEN": wrong}
        command = [sys.executable, "-m", "simpro_counter", "check", "--url", service.url]
        result = subprocess.run(
            command,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        code, output = result.returncode, result.stdout + result.stderr
    else:
        buffer = io.StringIO()
        code = check_deployment(
            service.url, wrong, console=Console(file=buffer, width=200), wait=30
        )
        output = buffer.getvalue()
    assert code == 1, output
    assert "✗ POST /api/simpro/customers/refresh?background=true: 401" in output
    assert "✗ POST /api/simpro/customers/refresh: 401" in output
    assert "16 passed, 2 failed" in output
    assert wrong not in output


def _check_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`simpro-counter check` as a process, with ADMIN_TOKEN only when given in `env`."""
    base = {k: v for k, v in os.environ.items() if k != "ADMIN_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "simpro_counter", "check", *args],
        env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_token_is_read_from_a_private_file(service: ServiceProcess, tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")  # as `echo` writes it: the newline is not the token's
    token_file.chmod(0o600)
    result = _check_cli(["--url", service.url, "--token-file", str(token_file)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "18 passed, 0 failed" in result.stdout
    assert "skipped" not in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_the_token_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # never reached: the command stops first
    result = _check_cli(["--url", url, "--token", TOKEN], tmp_path)
    assert result.returncode == 2
    assert "No such option: --token" in result.stderr
    assert "--token-file" in _check_cli(["--help"], tmp_path).stdout


@pytest.mark.parametrize(
    ("content", "mode", "reason"),
    [
        (None, 0o600, "does not exist"),
        ("\n", 0o600, "is empty"),
        (TOKEN, 0o644, "is open to other users (mode 0644): run `chmod 600"),
        (TOKEN, 0o620, "is open to other users (mode 0620)"),
    ],
)
def test_a_token_file_that_is_missing_empty_or_shared_is_refused(
    tmp_path: Path, content: str | None, mode: int, reason: str
) -> None:
    token_file = tmp_path / "admin-token"
    if content is not None:
        token_file.write_text(content)
        token_file.chmod(mode)
    url = f"http://127.0.0.1:{free_port()}"
    result = _check_cli(["--url", url, "--token-file", str(token_file)], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"ADMIN_TOKEN file {token_file} {reason}" in lines[0]
    assert TOKEN not in result.stdout + result.stderr
    assert result.stdout == ""  # no check ran


async def test_no_admin_token_and_restricted_cors_on_the_server(
    simulator: RunningSimulator, redis_url: str, tmp_path: Path
) -> None:
    site = "https://www.example.org"
    env = {**_env(simulator, redis_url, None), "CORS_ORIGINS": site}
    with service_process(env, tmp_path) as svc:
        without = await run_checks(svc.url, None, wait=30, origin=site)
        with_token = await run_checks(svc.url, TOKEN, wait=30)
    assert _failures(without) == []
    names = _by_name(without)
    assert "cannot be refreshed over HTTP" in names[f"{FOREGROUND} without a token"].detail
    assert names["CORS"].detail == f"Origin {site}: Access-Control-Allow-Origin: {site}"
    failed = _by_name(_failures(with_token))
    assert list(failed) == ["CORS", BACKGROUND, FOREGROUND]
    assert "check with --origin" in failed["CORS"].detail
    assert "ADMIN_TOKEN is not set on the server" in failed[BACKGROUND].detail
    assert "ADMIN_TOKEN is not set on the server" in failed[FOREGROUND].detail


async def test_a_failing_simpro_is_reported_until_a_refresh_succeeds_again(
    redis_url: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(invoices=600, customers=150, seed=17, rate=0, fault_kinds=("5xx",))
    with running_simulator(config) as simulator:
        env = {**_env(simulator, redis_url, TOKEN), "SIMPRO_RETRY_ATTEMPTS": "1"}
        with service_process(env, tmp_path) as svc:
            async with httpx.AsyncClient(base_url=svc.url) as client:
                await wait_for_count(client)
            simulator.simulator.faults.rate = 1.0
            failing = await run_checks(svc.url, TOKEN, wait=30)
            simulator.simulator.faults.rate = 0.0
            recovered = await run_checks(svc.url, TOKEN, wait=30)
    failed = {result.name: result.detail for result in _failures(failing)}
    assert set(failed) == {BACKGROUND, FOREGROUND, "GET /readyz"}
    assert failed[BACKGROUND].startswith("the refresh failed: lastError '")
    assert failed[FOREGROUND].startswith("502: the refresh failed (Simpro): ")
    assert failed["GET /readyz"].startswith("503 not ready: redis ok, simpro failing: ")
    # The old error is still in the status, but older than the last success: not a failure.
    # (/readyz may still report Simpro down: it trusts its last Simpro probe for 30 s.)
    assert {result.name for result in _failures(recovered)} <= {"GET /readyz"}


async def test_nothing_listening_fails_every_check_cleanly() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    results = await run_checks(url, TOKEN, wait=2)
    assert len(results) == 18
    assert all(not result.ok and result.detail for result in results)
    assert _by_name(results)["GET /healthz"].detail.startswith(f"cannot connect to {url}")
    assert all("Traceback" not in result.detail for result in results)


def test_render_marks_each_line_and_counts() -> None:
    console = Console(record=True, width=120)
    render(
        [
            CheckResult("GET /healthz", True, "alive"),
            CheckResult("GET /metrics", False, "expected 200, got 500 [boom]"),
            CheckResult(
                "POST refresh", True, "skipped: no ADMIN_TOKEN or --token-file given", skipped=True
            ),
        ],
        console,
    )
    lines = console.export_text().splitlines()
    assert lines == [
        "✓ GET /healthz: alive",
        "✗ GET /metrics: expected 200, got 500 [boom]",
        "○ POST refresh: skipped: no ADMIN_TOKEN or --token-file given",
        "1 passed, 1 failed, 1 skipped",
    ]


def test_history_command_prints_the_growth_table_and_csv(
    service: ServiceProcess, simulator: RunningSimulator, tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "simpro_counter", "history", "--url", service.url, *args],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**os.environ, "COLUMNS": "120"},
        )  # fmt: skip

    wait_until_counted(service.url)
    body = httpx.get(f"{service.url}/api/simpro/customers/history?interval=year").json()
    table = run("--interval", "year")
    assert table.returncode == 0, table.stderr
    for point in body["history"]:
        assert f"{point['period']}  " in table.stdout
    customers = simulator.simulator.truth().customers
    assert f"{customers:,} customers over {len(body['history'])} years" in table.stdout

    as_csv = run("--interval", "quarter", "--csv")
    assert as_csv.returncode == 0, as_csv.stderr
    lines = as_csv.stdout.splitlines()
    assert lines[0] == "period,new,cumulative"
    assert lines[-1].endswith(f",{customers}")

    wrong = run("--interval", "week")
    assert wrong.returncode == 1
    assert "422" in wrong.stderr
