"""The simulator's behaviour around the data: auth, rate limit, faults, latency,
If-Modified-Since, mutations, statistics and hooks (in-process transport)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import httpx
import pytest

from simpro_counter.simulator import (
    FaultInjector,
    Simulator,
    SimulatorConfig,
    SlidingWindow,
    TokenBucket,
)

AUTH = {"Authorization": "Bearer demo-key"}
INVOICES = "/api/v1.0/companies/0/invoices/"


class FakeClock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self, start: float = 1_750_000_000.25) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


SMALL = SimulatorConfig(invoices=120, customers=25, seed=2, rate=0.0)


def small(**overrides: Any) -> SimulatorConfig:
    return replace(SMALL, **overrides)


def client_for(sim: Simulator, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=sim.transport(), base_url="http://sim", headers=headers)


@pytest.fixture
def sim() -> Simulator:
    return Simulator(small())


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sim, headers=AUTH) as client:
        yield client


# -- authentication ------------------------------------------------------------------


async def test_api_key_is_required(sim: Simulator) -> None:
    async with client_for(sim) as client:
        missing = await client.get(INVOICES)
        wrong = await client.get(INVOICES, headers={"Authorization": "Bearer nope"})
        right = await client.get(INVOICES, headers=AUTH)
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json() == {"errors": [{"message": "Unauthorized"}]}
    assert right.status_code == 200


async def test_oauth2_client_credentials_in_the_form_and_with_basic(sim: Simulator) -> None:
    async with client_for(sim) as client:
        form = {"grant_type": "client_credentials"}
        by_form = await client.post(
            "/oauth2/token",
            data={**form, "client_id": "demo-client", "client_secret": "demo-secret"},
        )
        basic = base64.b64encode(b"demo-client:demo-secret").decode()
        by_basic = await client.post(
            "/oauth2/token", data=form, headers={"Authorization": f"Basic {basic}"}
        )
        for response in (by_form, by_basic):
            assert response.status_code == 200
            body = response.json()
            assert body["token_type"] == "Bearer"
            assert body["expires_in"] == 3600
            used = await client.get(
                INVOICES, headers={"Authorization": f"Bearer {body['access_token']}"}
            )
            assert used.status_code == 200

        wrong = await client.post(
            "/oauth2/token",
            data={**form, "client_id": "demo-client", "client_secret": "guess"},
        )
        assert wrong.status_code == 401
        assert wrong.json() == {"error": "invalid_client"}
        grant = await client.post("/oauth2/token", data={"grant_type": "password"})
        assert grant.status_code == 400


async def test_access_tokens_expire() -> None:
    clock = FakeClock()
    sim = Simulator(small(token_lifetime=60), clock=clock)
    async with client_for(sim) as client:
        issued = await client.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "demo-client",
                "client_secret": "demo-secret",
            },
        )
        assert issued.json()["expires_in"] == 60
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        clock.now += 59
        assert (await client.get(INVOICES, headers=bearer)).status_code == 200
        clock.now += 2
        expired = await client.get(INVOICES, headers=bearer)
        assert expired.status_code == 401
        assert expired.json() == {"errors": [{"message": "Unauthorized"}]}
        assert (await client.get(INVOICES, headers=AUTH)).status_code == 200  # keys never do


# -- rate limit and latency ----------------------------------------------------------


async def test_rate_limit_answers_429_without_retry_after() -> None:
    sim = Simulator(small(rate=3.0))
    async with client_for(sim, headers=AUTH) as client:
        answers = [await client.get(INVOICES) for _ in range(5)]
        statuses = [r.status_code for r in answers]
        assert statuses[:3] == [200, 200, 200]
        limited = [r for r in answers if r.status_code == 429]
        assert limited
        for response in limited:
            assert "Retry-After" not in response.headers
            assert response.json() == {"errors": [{"message": "Rate limit exceeded"}]}
        assert (await client.get("/__truth")).status_code == 200  # control: not limited
        await asyncio.sleep(0.4)  # refills at 3 tokens/s
        assert (await client.get(INVOICES)).status_code == 200
    assert sim.stats.by_status[429] == len(limited)
    assert sim.stats.faults == {}  # rate limiting is not a fault


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, clock=lambda: now[0])
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert [bucket.try_acquire() for _ in range(2)] == [True, False]
    now[0] += 10
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]  # capped at rate
    assert all(TokenBucket(0).try_acquire() for _ in range(100))
    slow = TokenBucket(0.5, clock=lambda: now[0])
    assert [slow.try_acquire() for _ in range(2)] == [True, False]
    now[0] += 2
    assert slow.try_acquire()


def test_sliding_window_allows_rate_in_any_second_and_no_burst() -> None:
    now = [0.0]
    window = SlidingWindow(3.0, clock=lambda: now[0])
    assert [window.try_acquire() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.999
    assert not window.try_acquire()  # the three of t=0 are still within the second
    now[0] = 1.0
    assert [window.try_acquire() for _ in range(4)] == [True, True, True, False]
    # Spread out: one every 0.3 s passes three times, then the fourth is 0.9 s after the first.
    now[0] = 5.0
    passed = []
    for step in range(5):
        now[0] = 5.0 + step * 0.3
        passed.append(window.try_acquire())
    assert passed == [True, True, True, False, True]
    assert all(SlidingWindow(0).try_acquire() for _ in range(100))
    now[0] = 10.0
    slow = SlidingWindow(0.5, clock=lambda: now[0])
    assert [slow.try_acquire() for _ in range(2)] == [True, False]
    now[0] = 11.9
    assert not slow.try_acquire()
    now[0] = 12.0
    assert slow.try_acquire()


def test_sliding_window_refuses_what_a_token_bucket_lets_through() -> None:
    """After a full second's worth, the bucket has refilled a token; the window has not."""
    now = [0.0]
    bucket = TokenBucket(3.0, clock=lambda: now[0])
    window = SlidingWindow(3.0, clock=lambda: now[0])
    assert all(bucket.try_acquire() and window.try_acquire() for _ in range(3))
    now[0] = 0.4
    assert bucket.try_acquire()
    assert not window.try_acquire()


async def test_sliding_limiter_answers_429_without_retry_after() -> None:
    sim = Simulator(small(rate=3.0, limiter="sliding"))
    async with client_for(sim, headers=AUTH) as client:
        statuses = [(await client.get(INVOICES)).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        limited = await client.get(INVOICES)
        assert "Retry-After" not in limited.headers
        assert limited.json() == {"errors": [{"message": "Rate limit exceeded"}]}
    assert isinstance(sim.limiter, SlidingWindow)
    assert isinstance(Simulator(small()).limiter, TokenBucket)  # the default shape
    with pytest.raises(ValueError, match="limiter"):
        small(limiter="leaky")


async def test_latency_is_added_with_jitter() -> None:
    sim = Simulator(small(latency=0.05))
    delays = [sim.latency.next_delay() for _ in range(50)]
    assert all(0.045 <= d <= 0.055 for d in delays)
    assert len(set(delays)) > 1
    async with client_for(sim, headers=AUTH) as client:
        started = time.perf_counter()
        await client.get(INVOICES)
        assert time.perf_counter() - started >= 0.04


# -- faults --------------------------------------------------------------------------


async def test_scheduled_faults_each_kind(sim: Simulator, api: httpx.AsyncClient) -> None:
    sim.faults.schedule.extend(["5xx", None, "429", "truncated", "drop"])

    server_error = await api.get(INVOICES)
    assert server_error.status_code in (500, 503)
    assert server_error.content
    assert (await api.get(INVOICES)).status_code == 200  # None: no fault

    throttled = await api.get(INVOICES)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"

    truncated = await api.get(INVOICES, params={"pageSize": 10})
    assert truncated.status_code == 200
    assert truncated.headers["Result-Total"] == "120"
    assert int(truncated.headers["Content-Length"]) == len(truncated.content)
    with pytest.raises(json.JSONDecodeError):
        truncated.json()

    with pytest.raises(httpx.RemoteProtocolError):
        await api.get(INVOICES)

    assert (await api.get(INVOICES)).status_code == 200  # schedule used up, rate 0
    assert sim.stats.faults == {"5xx": 1, "429": 1, "truncated": 1, "drop": 1}
    assert sim.stats.by_status[0] == 1  # the drop: no complete response


async def test_both_5xx_flavours_occur() -> None:
    sim = Simulator(small(fault_rate=1.0, fault_kinds=("5xx",)))
    async with client_for(sim, headers=AUTH) as client:
        answers = [await client.get(INVOICES) for _ in range(30)]
    assert {r.status_code for r in answers} == {500, 503}
    html = next(r for r in answers if r.status_code == 503)
    assert html.headers["content-type"].startswith("text/html")


async def test_slow_fault_stalls_then_answers_or_times_out() -> None:
    sim = Simulator(small(slow_seconds=0.3))
    sim.faults.schedule.extend(["slow", "slow"])
    async with client_for(sim, headers=AUTH) as client:
        started = time.perf_counter()
        slow = await client.get(INVOICES)
        assert slow.status_code == 200
        assert time.perf_counter() - started >= 0.3
        with pytest.raises(httpx.ReadTimeout):
            await client.get(INVOICES, timeout=0.05)


async def test_random_faults_are_seeded() -> None:
    def outcomes(seed: int) -> list[str | None]:
        injector = FaultInjector(0.3, ("5xx", "drop", "slow"), seed)
        return [injector.draw() for _ in range(200)]

    assert outcomes(1) == outcomes(1)
    assert outcomes(1) != outcomes(2)
    drawn = outcomes(1)
    assert 30 < sum(1 for d in drawn if d is not None) < 90
    assert {d for d in drawn if d is not None} == {"5xx", "drop", "slow"}


async def test_faults_only_hit_the_api(sim: Simulator, api: httpx.AsyncClient) -> None:
    sim.faults.rate = 1.0
    sim.faults.kinds = ("5xx",)
    assert (await api.get("/__truth")).status_code == 200
    token = await api.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
    )
    assert token.status_code == 200
    assert (await api.get(INVOICES)).status_code in (500, 503)


async def test_faults_can_be_set_over_http(sim: Simulator, api: httpx.AsyncClient) -> None:
    response = await api.put(
        "/__faults", json={"rate": 0.25, "kinds": ["drop", "429"], "schedule": ["429", None]}
    )
    assert response.status_code == 200
    assert response.json() == {"rate": 0.25, "kinds": ["drop", "429"], "schedule": ["429", None]}
    assert sim.faults.rate == 0.25
    assert sim.faults.kinds == ("drop", "429")
    assert list(sim.faults.schedule) == ["429", None]
    bad = await api.put("/__faults", json={"kinds": ["meteor"]})
    assert bad.status_code == 422
    assert sim.faults.kinds == ("drop", "429")


# -- If-Modified-Since ---------------------------------------------------------------


async def test_if_modified_since_304_mode() -> None:
    clock = FakeClock()
    sim = Simulator(small(), clock=clock)
    async with client_for(sim, headers=AUTH) as client:
        first = await client.get(INVOICES)
        cursor = first.headers["Date"]
        assert parsedate_to_datetime(cursor).timestamp() == int(clock.now)

        clock.now += 5
        unchanged = await client.get(INVOICES, headers={"If-Modified-Since": cursor})
        assert unchanged.status_code == 304
        assert unchanged.content == b""
        cursor = unchanged.headers["Date"]

        clock.now += 5
        changed = sim.dataset.invoice_ids()[3]
        sim.dataset.update_invoice(changed, total_ex_tax=Decimal("99.99"))
        after = await client.get(INVOICES, headers={"If-Modified-Since": cursor})
        assert after.status_code == 200
        assert [int(i["ID"]) for i in after.json()] == [changed]
        assert after.headers["Result-Total"] == "1"
        assert after.json()[0]["Total"]["ExTax"] == 99.99

        detail = (await client.get(f"{INVOICES}{changed}")).json()
        modified = parsedate_to_datetime(after.headers["Date"]).timestamp()
        assert detail["DateModified"].endswith("+10:00")
        assert int(modified) == int(clock.now)


async def test_if_modified_since_empty_200_mode() -> None:
    sim = Simulator(small(not_modified_status=200))
    async with client_for(sim, headers=AUTH) as client:
        cursor = (await client.get(INVOICES)).headers["Date"]
        unchanged = await client.get(INVOICES, headers={"If-Modified-Since": cursor})
        assert unchanged.status_code == 200
        assert unchanged.json() == []
        assert unchanged.headers["Result-Total"] == "0"
        assert unchanged.headers["Result-Pages"] == "0"


async def test_a_change_in_the_same_second_as_the_cursor_is_not_missed() -> None:
    # The client's cursor is the Date of a response; a change stamped in that very
    # second must still come back when the cursor is sent as If-Modified-Since.
    clock = FakeClock(start=1_750_000_000.1)
    sim = Simulator(small(), clock=clock)
    async with client_for(sim, headers=AUTH) as client:
        cursor = (await client.get(INVOICES)).headers["Date"]
        clock.now += 0.8  # still the same second
        new_id = sim.dataset.add_invoice(total_ex_tax=Decimal("5.00"))
        after = await client.get(INVOICES, headers={"If-Modified-Since": cursor})
        assert [int(i["ID"]) for i in after.json()] == [new_id]


async def test_old_if_modified_since_returns_records_changed_since(api: httpx.AsyncClient) -> None:
    params: dict[str, str | int] = {"columns": "ID,DateModified", "pageSize": 250}
    everything = (await api.get(INVOICES, params=params)).json()
    total = int((await api.get(INVOICES)).headers["Result-Total"])

    epoch = await api.get(INVOICES, headers={"If-Modified-Since": formatdate(0, usegmt=True)})
    assert int(epoch.headers["Result-Total"]) == total

    stamps = sorted(int(datetime.fromisoformat(i["DateModified"]).timestamp()) for i in everything)
    cut = stamps[15] + 1
    some = await api.get(INVOICES, headers={"If-Modified-Since": formatdate(cut, usegmt=True)})
    assert int(some.headers["Result-Total"]) == sum(1 for s in stamps if s >= cut)
    assert 0 < int(some.headers["Result-Total"]) < total

    garbage = await api.get(INVOICES, headers={"If-Modified-Since": "yesterday-ish"})
    assert int(garbage.headers["Result-Total"]) == total  # unparseable: ignored, as HTTP says


async def test_every_response_has_a_date_header(sim: Simulator, api: httpx.AsyncClient) -> None:
    sim.faults.schedule.extend(["5xx", "429"])
    responses = [
        await api.get(INVOICES),
        await api.get(INVOICES),
        await api.get(INVOICES, headers={"Authorization": "Bearer wrong"}),
        await api.get("/__truth"),
        await api.get("/nowhere"),
    ]
    for response in responses:
        assert parsedate_to_datetime(response.headers["Date"]).tzinfo is not None


# -- mutations and truth -------------------------------------------------------------


async def test_mutations_over_http_change_the_truth(sim: Simulator, api: httpx.AsyncClient) -> None:
    before = sim.truth()
    buyers = {sim.dataset.invoice(i).customer_id for i in sim.dataset.invoice_ids()}
    newcomer = next(c for c in sim.dataset.customer_ids() if c not in buyers)

    created = await api.post("/__invoices", json={"customerId": newcomer, "totalExTax": "12.34"})
    assert created.status_code == 201
    new_id = created.json()["ID"]
    assert new_id == max(sim.dataset.invoice_ids())
    after_add = sim.truth()
    assert after_add.invoices == before.invoices + 1
    assert after_add.customers == before.customers + 1
    assert after_add.revenue == before.revenue + Decimal("12.34")
    listed = await api.get(INVOICES, params={"ID": new_id})
    assert int(listed.json()[0]["Customer"]["ID"]) == newcomer

    orphan = await api.post("/__invoices", json={"customerId": None, "totalExTax": 1})
    assert sim.truth().invoices_without_customer == before.invoices_without_customer + 1
    random_owner = await api.post("/__invoices", json={})
    assert sim.dataset.invoice(random_owner.json()["ID"]).customer_id is not None

    patched = await api.patch(f"/__invoices/{new_id}", json={"customerId": None})
    assert patched.status_code == 200
    assert sim.truth().customers == before.customers
    deleted = await api.delete(f"/__invoices/{orphan.json()['ID']}")
    assert deleted.status_code == 204
    assert sim.truth().invoices_without_customer == before.invoices_without_customer + 1
    assert (await api.get("/__truth")).json() == sim.truth().as_json()

    assert (await api.delete(f"/__invoices/{orphan.json()['ID']}")).status_code == 404
    assert (await api.patch("/__invoices/1", json={"customerId": 1})).status_code == 404
    assert (await api.post("/__invoices", json={"customerId": 999_999})).status_code == 404
    assert (await api.post("/__invoices", json={"totalExTax": "lots"})).status_code == 422
    assert (await api.post("/__invoices", content=b"{nope")).status_code == 422


async def test_dataset_mutations_show_in_the_api(sim: Simulator, api: httpx.AsyncClient) -> None:
    dataset = sim.dataset
    before = sim.truth()
    target = dataset.invoice_ids()[0]
    old_total = dataset.invoice(target).ex_tax
    dataset.update_invoice(target, total_ex_tax=Decimal("1000.00"))
    assert sim.truth().revenue == before.revenue - Decimal(old_total) / 100 + Decimal("1000")
    detail = (await api.get(f"{INVOICES}{target}")).json()
    assert detail["Total"]["ExTax"] == 1000.0
    assert detail["Total"]["IncTax"] == 1100.0

    added = dataset.add_invoice()
    assert added == dataset.invoice_ids()[-1]
    dataset.delete_invoice(added)
    assert dataset.add_invoice() == added + 1  # IDs are not reused
    with pytest.raises(KeyError):
        dataset.update_invoice(added, customer_id=None)


# -- statistics and hooks ------------------------------------------------------------


async def test_stats_count_simpro_requests_only(sim: Simulator, api: httpx.AsyncClient) -> None:
    await api.get(INVOICES)
    await api.get("/api/v1.0/companies/0/jobs/")
    await api.get(INVOICES, headers={"Authorization": "Bearer wrong"})
    await api.post("/oauth2/token", data={"grant_type": "client_credentials"})
    await api.get("/__truth")
    await api.get("/__stats")
    assert sim.stats.total == 4
    assert sim.stats.by_status == {200: 2, 401: 2}
    assert sim.stats.by_path[INVOICES] == 2
    over_http = (await api.get("/__stats")).json()
    assert over_http["total"] == 4
    assert over_http["byStatus"] == {"200": 2, "401": 2}
    reset = await api.post("/__stats/reset")
    assert reset.json()["total"] == 0
    assert sim.stats.total == 0
    assert sim.stats.by_path == {}


async def test_hooks_run_once_per_request_and_can_change_data(
    sim: Simulator, api: httpx.AsyncClient
) -> None:
    seen: list[int] = []
    added: list[int] = []

    def change_on_second(number: int) -> None:
        seen.append(number)
        if number == 2:
            added.append(sim.dataset.add_invoice(total_ex_tax=Decimal("1.00")))

    hook: Callable[[int], None] = change_on_second
    sim.hooks.append(hook)
    first = await api.get(INVOICES)
    second = await api.get(INVOICES)
    await api.get("/__truth")
    await api.get(INVOICES)
    assert seen == [1, 2, 3]
    assert int(second.headers["Result-Total"]) == int(first.headers["Result-Total"]) + 1
    assert sim.truth().invoices == 121
    assert added == [sim.dataset.invoice_ids()[-1]]
