"""The simulator under uvicorn, over real HTTP on a loopback port."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from simpro_counter.simulator import RunningSimulator, SimulatorConfig, running_simulator

AUTH = {"Authorization": "Bearer demo-key"}
INVOICES = "/api/v1.0/companies/0/invoices/"


@pytest.fixture(scope="module")
def live() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(invoices=700, customers=120, seed=9, rate=0, slow_seconds=0.3)
    with running_simulator(config) as running:
        yield running


@pytest.fixture
def http(live: RunningSimulator) -> Iterator[httpx.Client]:
    live.simulator.faults.schedule.clear()
    with httpx.Client(base_url=live.url, headers=AUTH, timeout=5.0) as client:
        yield client


def test_full_scan_over_http_matches_the_truth(live: RunningSimulator, http: httpx.Client) -> None:
    owners: set[int] = set()
    revenue = Decimal("0.00")
    count = 0
    page = 1
    while True:
        response = http.get(INVOICES, params={"pageSize": 250, "page": page})
        assert response.status_code == 200
        assert len(response.headers.get_list("date")) == 1  # ours, not also uvicorn's
        for item in response.json():
            count += 1
            revenue += Decimal(str(item["Total"]["ExTax"]))
            if item["Customer"] is not None:
                owners.add(int(item["Customer"]["ID"]))
        if page >= int(response.headers["Result-Pages"]):
            break
        page += 1
    truth = live.simulator.truth()
    assert (count, len(owners), revenue) == (truth.invoices, truth.customers, truth.revenue)
    assert http.get("/__truth").json() == truth.as_json()


def test_oauth2_over_http(http: httpx.Client) -> None:
    token = http.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
        headers={"Authorization": ""},
    ).json()["access_token"]
    with_token = http.get(INVOICES, headers={"Authorization": f"Bearer {token}"})
    assert with_token.status_code == 200
    assert http.get(INVOICES, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_drop_is_a_transport_error(live: RunningSimulator, http: httpx.Client) -> None:
    live.simulator.faults.schedule.append("drop")
    with pytest.raises(httpx.TransportError):
        http.get(INVOICES)
    assert http.get(INVOICES).status_code == 200  # the server is fine afterwards


def test_truncated_body_is_complete_but_invalid(live: RunningSimulator, http: httpx.Client) -> None:
    live.simulator.faults.schedule.append("truncated")
    response = http.get(INVOICES, params={"pageSize": 20})
    assert response.status_code == 200
    assert response.headers["Result-Count"] == "20"
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_slow_fault_makes_a_client_time_out(live: RunningSimulator, http: httpx.Client) -> None:
    live.simulator.faults.schedule.append("slow")
    with pytest.raises(httpx.ReadTimeout):
        http.get(INVOICES, timeout=0.1)


def test_changes_from_the_test_thread_and_if_modified_since(
    live: RunningSimulator, http: httpx.Client
) -> None:
    cursor = http.get(INVOICES).headers["Date"]
    unchanged = http.get(INVOICES, headers={"If-Modified-Since": cursor})
    assert unchanged.status_code == 304
    new_id = live.simulator.dataset.add_invoice(total_ex_tax=Decimal("42.00"))
    changed = http.get(INVOICES, headers={"If-Modified-Since": cursor})
    assert changed.status_code == 200
    assert [int(i["ID"]) for i in changed.json()] == [new_id]
    live.simulator.dataset.delete_invoice(new_id)


def test_the_server_stops_promptly_when_the_block_ends() -> None:
    config = SimulatorConfig(invoices=10, customers=3, rate=0, slow_seconds=30)
    with running_simulator(config) as running:
        url = running.url
        assert httpx.get(f"{url}/__truth").json()["invoices"] == 10
        # A stalled request whose client gave up must not hold the shutdown for 30 s.
        running.simulator.faults.schedule.append("slow")
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{url}{INVOICES}", headers=AUTH, timeout=0.1)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/__truth", timeout=1.0)
