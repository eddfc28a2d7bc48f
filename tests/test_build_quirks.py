"""Builds that ignore ID filters or If-Modified-Since: the simulator's two modes, the
detectors that prove it, and the service staying exact and saying so, over real HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from simpro_counter.build_quirks import (
    ID_FILTERS,
    IF_MODIFIED_SINCE,
    forget_announcements,
    http_date,
    modified_before,
    note,
    outside,
)
from simpro_counter.errors import ScanIncompleteError
from simpro_counter.scan import scan_customers
from simpro_counter.simpro import SimproClient
from simpro_counter.simulator import Simulator, SimulatorConfig, running_simulator
from tests.conftest import client_config
from tests.service_fixtures import ADMIN_TOKEN, running_app, service_settings, wait_for_count

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INVOICES = "/api/v1.0/companies/0/invoices/"
# Which build, by what it ignores: (ID filters, If-Modified-Since).
BUILDS = {
    "ignores ID filters": (True, False),
    "ignores If-Modified-Since": (False, True),
    "ignores both": (True, True),
}


@pytest.fixture(autouse=True)
def _fresh_announcements() -> Iterator[None]:
    forget_announcements()
    yield
    forget_announcements()


# --- the simulator's modes, over HTTP ------------------------------------------------------


@pytest.mark.parametrize("ignore", [False, True])
def test_the_simulator_can_ignore_id_filters(ignore: bool) -> None:
    config = SimulatorConfig(invoices=40, customers=10, seed=2, rate=0, ignore_id_filters=ignore)
    with running_simulator(config) as running:
        ids = running.simulator.dataset.invoice_ids()
        headers = {"Authorization": "Bearer demo-key"}
        for condition in (
            f"between({ids[3]},{ids[5]})",
            f"in({ids[0]},{ids[9]})",
            f"gt({ids[-3]})",
        ):
            answer = httpx.get(
                f"{running.url}{INVOICES}",
                params={"ID": condition, "pageSize": 250, "columns": "ID,Customer"},
                headers=headers,
            )
            assert answer.status_code == 200, answer.text
            got = len(answer.json())
            assert (got == 40) if ignore else (got in (2, 3)), condition
        # A nested ID is another field: it filters on either build.
        customer = answer.json()[0]["Customer"]["ID"]
        by_customer = httpx.get(
            f"{running.url}{INVOICES}", params={"Customer.ID": customer}, headers=headers
        )
        assert 0 < int(by_customer.headers["Result-Total"]) < 40


@pytest.mark.parametrize("ignore", [False, True])
def test_the_simulator_can_ignore_if_modified_since(ignore: bool) -> None:
    config = SimulatorConfig(
        invoices=30, customers=10, seed=2, rate=0, ignore_if_modified_since=ignore
    )
    with running_simulator(config) as running:
        headers = {"Authorization": "Bearer demo-key", "If-Modified-Since": formatdate(usegmt=True)}
        answer = httpx.get(f"{running.url}{INVOICES}", headers=headers)
        if ignore:
            assert answer.status_code == 200
            assert answer.headers["Result-Total"] == "30"
        else:
            assert answer.status_code == 304


# --- the detectors -------------------------------------------------------------------------


def test_a_record_modified_before_the_cursor_proves_the_header_was_ignored() -> None:
    since = http_date("Wed, 02 Dec 2026 01:00:00 GMT")
    assert since == datetime(2026, 12, 2, 1, tzinfo=UTC)
    long_before = {"DateModified": "2026-12-02T10:59:00+10:00"}  # 00:59 UTC
    assert modified_before(long_before, since)
    # Within the header's one-second resolution, at or after it, or unreadable: no proof.
    for value in (
        "2026-12-02T11:59:59+10:00",
        "2026-12-02T01:00:00+00:00",
        "2026-12-02T02:00:00Z",
        "2026-12-02T00:00:00",  # no zone: a local time of an unknown zone
        "yesterday",
        None,
        20261202,
    ):
        assert not modified_before({"DateModified": value}, since), value
    assert not modified_before(long_before, None)
    assert http_date("not a date") is None


def test_an_id_outside_the_range_asked_for() -> None:
    for invoice_id, low, high in ((4, 5, None), (11, None, 10), (3, 5, 10)):
        assert outside(invoice_id, low, high)
    for invoice_id, low, high in ((5, 5, 10), (10, 5, 10), (1, None, None)):
        assert not outside(invoice_id, low, high)


# --- the service on such builds, over real HTTP -----------------------------------------


@pytest.mark.parametrize("build", BUILDS)
async def test_scan_and_sync_stay_exact_and_say_what_the_build_ignores(
    redis_url: str, build: str, caplog: pytest.LogCaptureFixture
) -> None:
    ignore_ids, ignore_since = BUILDS[build]
    config = SimulatorConfig(
        invoices=1600,
        customers=300,
        seed=8,
        rate=0,
        ignore_id_filters=ignore_ids,
        ignore_if_modified_since=ignore_since,
    )
    expected = tuple(
        name for name, on in ((ID_FILTERS, ignore_ids), (IF_MODIFIED_SINCE, ignore_since)) if on
    )
    caplog.set_level(logging.WARNING, logger="simpro_counter.refresh")
    with running_simulator(config) as running:
        simulator = running.simulator
        settings = service_settings(redis_url, simpro_base_url=running.url)
        async with running_app(settings) as (_, client):  # Simpro over real HTTP
            await wait_for_count(client)
            dataset = simulator.dataset
            # Changes a scan must see: a new customer, an invoice moved, one deleted.
            new_customer = dataset.uninvoiced_customer_ids()[0]
            dataset.add_invoice(customer_id=new_customer)
            dataset.update_invoice(dataset.invoice_ids()[10], customer_id=new_customer)
            dataset.delete_invoice(dataset.invoice_ids()[700])
            full = (await client.post("/api/simpro/customers/refresh", headers=AUTH)).json()
            assert full["success"], full
            assert full["count"] == simulator.truth().customers
            assert full["totalInvoices"] == simulator.truth().invoices
            scanned: dict[str, Any] = (await client.get("/api/simpro/customers/refresh")).json()
            scan_said = tuple(scanned["lastRefresh"].get("buildIgnores", ()))
            assert scan_said == expected
            assert scanned["lastRefresh"].get("notes", []) == [note(i, "scan") for i in expected]

            for _ in range(2):
                moved = dataset.invoice_ids()[200]
                dataset.update_invoice(moved, customer_id=dataset.uninvoiced_customer_ids()[0])
                dataset.add_invoice()
                synced = (
                    await client.post(
                        "/api/simpro/customers/refresh?mode=incremental", headers=AUTH
                    )
                ).json()
                assert synced["success"], synced
                assert synced["count"] == simulator.truth().customers
                last_sync = synced["lastSync"]
                if ignore_since:
                    assert last_sync["buildIgnores"] == [IF_MODIFIED_SINCE]
                    assert last_sync["notes"] == [note(IF_MODIFIED_SINCE, "sync")]
                    assert last_sync["changed"] == simulator.truth().invoices  # read them all
                else:
                    assert "buildIgnores" not in last_sync
                    # What changed, and what changed in the second its cursor names.
                    assert last_sync["changed"] <= 6
    logged = [r.getMessage() for r in caplog.records if r.name == "simpro_counter.refresh"]
    for ignored in expected:
        assert logged.count(note(ignored, "scan")) == 1, logged  # once per process
    assert logged.count(note(IF_MODIFIED_SINCE, "sync")) == (1 if ignore_since else 0), logged


async def test_a_build_that_honours_both_is_not_reported() -> None:
    config = SimulatorConfig(invoices=900, customers=200, seed=9, rate=0)
    with running_simulator(config) as running:
        async with SimproClient(client_config(running.url, page_size=100)) as client:
            report = await scan_customers(client)
    assert report.ignored == ()
    assert "buildIgnores" not in report.as_json()
    assert report.count == running.simulator.truth().customers


@pytest.mark.parametrize("ignore_since", [False, True])
async def test_a_scan_that_never_settles_fails_cleanly_in_bounded_requests(
    ignore_since: bool,
) -> None:
    simulator = Simulator(
        SimulatorConfig(
            invoices=1000,
            customers=300,
            seed=4,
            rate=0,
            ignore_id_filters=True,
            ignore_if_modified_since=ignore_since,
        )
    )

    def delete_one(request_number: int) -> None:  # a deletion between every two answers
        ids = simulator.dataset.invoice_ids()
        simulator.dataset.delete_invoice(ids[len(ids) // 2])

    simulator.hooks.append(delete_one)
    async with SimproClient(
        client_config(page_size=100), transport=simulator.transport()
    ) as client:
        with pytest.raises(ScanIncompleteError, match="ignores ID filters"):
            await scan_customers(client)
        # Four passes of 10 pages and their snapshots (twice the pages when the catch-up
        # reads everything), and the attempt by ID range that found them ignored.
        assert client.stats.requests <= 4 * (2 if ignore_since else 1) * 12 + 10
