"""The Simpro client against the simulator: paging, rate limit, retries, errors, auth."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import stamina

from simpro_counter.errors import (
    SimproAuthError,
    SimproRequestError,
    SimproUnavailableError,
)
from simpro_counter.scan import scan_customers
from simpro_counter.simpro import SimproClient
from simpro_counter.simpro.limiter import Permit, RateLimiter
from simpro_counter.simulator import RunningSimulator, Simulator, SimulatorConfig
from tests.conftest import client_config
from tests.transports import ConcurrencyProbe, StripHeaders


async def test_records_yields_every_invoice_once_with_only_the_asked_columns(
    simulator: Simulator, client: SimproClient
) -> None:
    ids = []
    async for record in client.records("invoices", columns=("ID", "Customer")):
        assert set(record) == {"ID", "Customer"}
        ids.append(int(record["ID"]))
    assert len(ids) == len(set(ids)) == simulator.truth().invoices
    pages = math.ceil(simulator.truth().invoices / 250)
    assert client.stats.requests == pages


async def test_pages_after_the_first_are_fetched_concurrently(simulator: Simulator) -> None:
    probe = ConcurrencyProbe(simulator.transport())
    config = client_config(page_size=50, max_in_flight=6)
    async with SimproClient(config, transport=probe) as client:
        numbers = [page.number async for page in client.pages("invoices", columns=("ID",))]
    assert sorted(numbers) == list(range(1, math.ceil(simulator.truth().invoices / 50) + 1))
    assert probe.peak == 6  # the cap on requests in flight is reached and never exceeded


async def test_without_result_pages_it_pages_until_a_short_page(simulator: Simulator) -> None:
    transport = StripHeaders(simulator.transport(), "Result-Pages")
    async with SimproClient(client_config(page_size=100), transport=transport) as client:
        records = [r async for r in client.records("invoices", columns=("ID",))]
    total = simulator.truth().invoices
    assert len(records) == total
    # Sequential: every full page asks for one more; the short (or empty) one ends it.
    assert client.stats.requests == total // 100 + 1


async def test_the_token_bucket_keeps_under_the_builds_rate_limit() -> None:
    simulator = Simulator(SimulatorConfig(invoices=1000, customers=100, seed=1, rate=20))
    config = client_config(rate_limit=20, page_size=30)
    async with SimproClient(config, transport=simulator.transport()) as client:
        started = time.monotonic()
        records = [r async for r in client.records("invoices", columns=("ID",))]
        elapsed = time.monotonic() - started
    assert len(records) == 1000
    assert client.stats.by_status.get(429, 0) == 0
    # 34 requests at 20 in any second cannot finish faster than (34 - 16) / 20 s (nor 1 s).
    assert elapsed >= (34 - 16) / 20 * 0.9


async def test_a_scan_draws_no_429_from_a_sliding_window_build() -> None:
    """At most 20 requests in any second, counted on arrival: no burst allowance at all."""
    simulator = Simulator(
        SimulatorConfig(invoices=2000, customers=300, seed=3, rate=20, limiter="sliding")
    )
    config = client_config(rate_limit=20, page_size=50)
    async with SimproClient(config, transport=simulator.transport()) as client:
        report = await scan_customers(client)
    assert report.count == simulator.truth().customers
    assert report.requests > 2 * 20  # enough to fill more than two windows
    assert client.stats.by_status.get(429, 0) == 0
    assert client.limiter.rate == 20  # never slowed down


async def test_a_ceiling_above_the_builds_limit_slows_down_after_429s() -> None:
    """SIMPRO_RATE_LIMIT set four times too high: the 429s halve the rate, so only a few
    requests are refused instead of three in four."""
    simulator = Simulator(
        SimulatorConfig(invoices=2000, customers=300, seed=3, rate=10, limiter="sliding")
    )
    config = client_config(rate_limit=40, page_size=50)
    limiter = RatesAfter429(40)
    async with SimproClient(config, transport=simulator.transport(), limiter=limiter) as client:
        report = await scan_customers(client)
    assert report.count == simulator.truth().customers
    refused = client.stats.by_status[429]
    assert 0 < refused < report.requests / 4  # without slowing down: about 60 of 100
    assert min(limiter.rates) <= 10  # halved at least twice
    assert limiter.rate > min(limiter.rates)  # and recovering by the end of the scan


class RatesAfter429(RateLimiter):
    """Records the rate after each 429."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.rates: list[float] = []

    def rate_limited(self, permit: Permit, retry_after: float | None = None) -> None:
        super().rate_limited(permit, retry_after)
        self.rates.append(self.rate)


async def test_429_without_retry_after_is_retried() -> None:
    stamina.set_testing(False)  # real backoff: the simulator's bucket must get time to refill
    simulator = Simulator(SimulatorConfig(invoices=600, customers=50, seed=2, rate=5))
    # The client believes the build allows far more than it does: the simulator answers 429.
    async with SimproClient(client_config(), transport=simulator.transport()) as client:
        records = [r async for r in client.records("invoices", columns=("ID",), page_size=30)]
    assert len(records) == 600
    assert client.stats.by_status[429] > 0
    assert client.stats.retries >= client.stats.by_status[429]


@pytest.mark.parametrize("kind", ["5xx", "drop", "truncated", "429", "slow"])
async def test_each_transient_fault_is_retried(simulator: Simulator, kind: str) -> None:
    simulator.faults.schedule.extend([kind, kind])
    config = client_config(timeout=0.3)
    async with SimproClient(config, transport=simulator.transport()) as client:
        records = [r async for r in client.records("invoices", columns=("ID",))]
    assert len(records) == simulator.truth().invoices
    assert client.stats.retries == 2


async def test_retries_are_bounded_then_fail_with_the_last_reason(simulator: Simulator) -> None:
    simulator.faults.rate = 1.0
    simulator.faults.kinds = ("5xx",)
    async with SimproClient(
        client_config(retry_attempts=4), transport=simulator.transport()
    ) as client:
        with pytest.raises(SimproUnavailableError, match=r"failed 4 times.*50[03]"):
            await client.count("invoices")
        assert client.stats.requests == 4


async def test_a_wrong_api_key_fails_at_once_with_what_to_check(simulator: Simulator) -> None:
    config = client_config(api_key="wrong")
    async with SimproClient(config, transport=simulator.transport()) as client:
        with pytest.raises(SimproAuthError, match=r"401 Unauthorized.*check SIMPRO_API_KEY"):
            await client.count("invoices")
        assert client.stats.requests == 1


async def test_other_4xx_fail_at_once_with_simpros_own_message(client: SimproClient) -> None:
    with pytest.raises(SimproRequestError, match="Invalid columns") as raised:
        await client.page("invoices", 1, columns=("ID", "NoSuchColumn"))
    assert raised.value.status == 422
    assert client.stats.requests == 1


async def test_oauth2_client_credentials_fetch_one_token_and_reuse_it(
    simulator: Simulator,
) -> None:
    config = client_config(api_key=None, client_id="demo-client", client_secret="demo-secret")
    async with SimproClient(config, transport=simulator.transport()) as client:
        records = [r async for r in client.records("invoices", columns=("ID",), page_size=100)]
    assert len(records) == simulator.truth().invoices
    assert simulator.stats.by_path.get("/oauth2/token") == 1


async def test_oauth2_token_is_renewed_when_it_expires() -> None:
    simulator = Simulator(SimulatorConfig(invoices=100, customers=20, rate=0, token_lifetime=1))
    config = client_config(api_key=None, client_id="demo-client", client_secret="demo-secret")
    async with SimproClient(config, transport=simulator.transport()) as client:
        assert await client.count("invoices") == 100
        await asyncio.sleep(1.2)  # the simulator's token expires; the client must notice
        assert await client.count("invoices") == 100
    assert simulator.stats.by_path.get("/oauth2/token") == 2


async def test_oauth2_wrong_secret_names_the_settings(simulator: Simulator) -> None:
    config = client_config(api_key=None, client_id="demo-client", client_secret="nope")
    async with SimproClient(config, transport=simulator.transport()) as client:
        with pytest.raises(SimproAuthError, match="SIMPRO_CLIENT_ID and SIMPRO_CLIENT_SECRET"):
            await client.count("invoices")


async def test_record_by_id_and_missing_record(simulator: Simulator, client: SimproClient) -> None:
    invoice_id = simulator.dataset.invoice_ids()[0]
    record = await client.record("invoices", invoice_id)
    assert record is not None
    assert int(record["ID"]) == invoice_id
    assert await client.record("invoices", 999_999_999) is None


async def test_over_real_http_with_a_dropped_connection(live_simulator: RunningSimulator) -> None:
    live_simulator.simulator.faults.schedule.extend(["drop", "5xx", "slow"])
    config = client_config(live_simulator.url, timeout=0.5)
    async with SimproClient(config) as client:
        records = [r async for r in client.records("invoices", columns=("ID", "Customer"))]
    assert len(records) == live_simulator.simulator.truth().invoices
    assert client.stats.retries == 3
