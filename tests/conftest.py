"""Shared fixtures: the Simpro simulator in-process and over real HTTP, and fast retries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import stamina
from pydantic import SecretStr

from simpro_counter.simpro import SimproClient, SimproConfig
from simpro_counter.simulator import (
    RunningSimulator,
    Simulator,
    SimulatorConfig,
    running_simulator,
)

pytest_plugins = ["tests.redis_fixtures", "tests.browser_fixtures"]

SIM_URL = "http://simpro.test"


@pytest.fixture(autouse=True)
def _fast_retries() -> Iterator[None]:
    # Backoff waits off; each request still gets the attempts its config allows (up to 10).
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


def client_config(base_url: str = SIM_URL, **overrides: object) -> SimproConfig:
    """A client config for tests: the simulator's key, no rate limit to speak of."""
    values: dict[str, object] = {
        "base_url": base_url,
        "api_key": "demo-key",
        "client_secret": None,
        "rate_limit": 1000.0,
        "timeout": 2.0,
        "retry_attempts": 8,
        "retry_timeout": 30.0,
    }
    values.update(overrides)
    for secret in ("api_key", "client_secret"):  # the config holds secrets as SecretStr
        if isinstance(values[secret], str):
            values[secret] = SecretStr(str(values[secret]))
    return SimproConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def simulator() -> Simulator:
    return Simulator(SimulatorConfig(invoices=1200, customers=300, seed=3, rate=0))


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[SimproClient]:
    async with SimproClient(client_config(), transport=simulator.transport()) as client:
        yield client


@pytest.fixture
def live_simulator() -> Iterator[RunningSimulator]:
    """The simulator under uvicorn on a free loopback port, stopped after the test."""
    config = SimulatorConfig(invoices=1500, customers=350, seed=5, rate=0, slow_seconds=1.0)
    with running_simulator(config) as running:
        yield running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last.

    Playwright's sync API keeps an event loop running in the session for as long as the
    browser lives; an asyncio test after it would find a loop already running.
    """
    browser_fixtures = {"page", "browser", "playwright"}
    items.sort(key=lambda item: bool(browser_fixtures & set(getattr(item, "fixturenames", ()))))
