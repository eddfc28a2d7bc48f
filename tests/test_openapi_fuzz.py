"""Schemathesis against the real service: the OpenAPI document is exact.

The service runs as `simpro-counter serve` on a loopback port, with the Simpro simulator
behind it (over real HTTP) and the test suite's redis-server. Schemathesis runs as its CLI,
`schemathesis run --checks all`, as an operator would: every phase it has (examples,
coverage with its wrong methods and missing parameters, fuzzing; stateful needs links the
document does not have), one worker, a fixed seed, no example database, a bounded number
of examples per operation. It runs twice: without credentials, and with
`Authorization: Bearer <ADMIN_TOKEN>`, which lets it run real refreshes of the small
simulated build. Both must report no failure.
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from simpro_counter.simulator import RunningSimulator, SimulatorConfig, running_simulator
from simpro_counter.store import EmbeddedRedis
from tests.service_fixtures import (
    ServiceProcess,
    service_env,
    service_process,
    stop_process,
    wait_until_counted,
)

TOKEN = "openapi-fuzz-admin-token-7c41e9b2d05a"  # 37 characters: ADMIN_TOKEN needs 32
SEED = 20260201
# Per operation and phase; with 11 operations one run takes a few seconds on an idle machine.
MAX_EXAMPLES = 10
RUN_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    # Small and without latency: a refresh Schemathesis starts takes milliseconds.
    config = SimulatorConfig(invoices=60, customers=20, seed=29, rate=0)
    with running_simulator(config) as running:
        yield running


@pytest.fixture(scope="module")
def service(
    simulator: RunningSimulator,
    shared_redis: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    env = service_env(
        simulator.url,
        prefix="fuzz",
        redis_url=shared_redis.url,
        admin_token=TOKEN,
        WEBHOOK_SECRET="openapi-fuzz-webhook-secret",
    )
    # Stopped by its PID on the way out (SIGTERM: the lifespan cancels any refresh left).
    with service_process(env, tmp_path_factory.mktemp("fuzz-service")) as svc:
        wait_until_counted(svc.url)
        _wait_until_ready(svc.url)
        yield svc


def _wait_until_ready(url: str, within: float = 60.0) -> None:
    """Until `/readyz` and the history answer 200: Schemathesis counts every 5xx as a
    failure, documented or not.

    On a busy machine the first connection to Redis can time out: the start-up scan then
    publishes its counts without the ledger, and the history waits for a full refresh,
    which a foreground one (with the token) provides.
    """
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + within
    while True:
        ready = httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        history = httpx.get(f"{url}/api/simpro/customers/history", timeout=5).status_code
        if ready and history == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready within {within} s (history: {history})")
        if history == 503:
            httpx.post(f"{url}/api/simpro/customers/refresh", headers=auth, timeout=30)
        time.sleep(0.2)


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    cases: int
    failures: list[str]


def _schemathesis(url: str, report_dir: Path, *headers: str) -> Run:
    """`schemathesis run --checks all` against `url`, stopped by its PID if it overruns."""
    junit = report_dir / "junit.xml"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/openapi.json",
        "--checks=all",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        "--workers=1",
        "--generation-database=none",
        "--request-timeout=10",
        "--no-color",
        "--report=junit",
        f"--report-junit-path={junit}",
        *(f"--header={header}" for header in headers),
    ]
    log = report_dir / "output.txt"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=report_dir, stdout=out, stderr=subprocess.STDOUT)
        try:
            returncode = process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_process(process, timeout=5)
            raise AssertionError(
                f"schemathesis ran past {RUN_TIMEOUT} s:\n{log.read_text()[-3000:]}"
            ) from None
    output = log.read_text()
    assert junit.exists(), output[-3000:]
    cases = ET.parse(junit).getroot().findall(".//testcase")
    failures = [
        case.get("name", "?")
        for case in cases
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return Run(returncode, output, len(cases), failures)


def _operations(url: str) -> int:
    document = httpx.get(f"{url}/openapi.json", timeout=5).json()
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return sum(len(set(item) & methods) for item in document["paths"].values())


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "headers", [(), (f"Authorization: Bearer {TOKEN}",)], ids=["anonymous", "admin-token"]
)
def test_schemathesis_finds_no_failure(
    service: ServiceProcess, tmp_path: Path, headers: tuple[str, ...]
) -> None:
    run = _schemathesis(service.url, tmp_path, *headers)
    tail = run.output[-6000:]
    assert run.failures == [], tail
    assert run.returncode == 0, tail
    # Every operation of the document was tested, not a part of it.
    assert run.cases == _operations(service.url), tail
    # The service is still there and answers: nothing Schemathesis sent broke it.
    assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
