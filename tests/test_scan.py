"""The exact full scan: equal to the simulator's truth, or a clean failure."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from simpro_counter.errors import ScanIncompleteError, SimproDataError
from simpro_counter.scan import scan_customers
from simpro_counter.simpro import SimproClient
from simpro_counter.simulator import RunningSimulator, Simulator, SimulatorConfig
from tests.conftest import client_config
from tests.transports import RewriteBody


async def test_the_count_equals_the_truth(simulator: Simulator, client: SimproClient) -> None:
    report = await scan_customers(client)
    truth = simulator.truth()
    assert report.count == truth.customers
    assert report.total_invoices == truth.invoices
    assert report.invoices_without_customer == truth.invoices_without_customer > 0
    assert report.pages == math.ceil(truth.invoices / 250)  # every page read once
    # The pages (the newest one doubling as the snapshot), one If-Modified-Since catch-up
    # (nothing changed) and the final count: nothing else.
    assert report.requests == report.pages + 2
    assert report.reconciled == 0


async def test_string_and_integer_ids_are_one_customer() -> None:
    simulator = Simulator(SimulatorConfig(invoices=400, customers=40, seed=11, rate=0))
    seen_string_ids = 0

    def count_strings(body: list[Any]) -> list[Any]:
        nonlocal seen_string_ids
        seen_string_ids += sum(
            isinstance(r.get("Customer"), dict) and isinstance(r["Customer"]["ID"], str)
            for r in body
        )
        return body

    transport = RewriteBody(simulator.transport(), count_strings)
    async with SimproClient(client_config(), transport=transport) as client:
        report = await scan_customers(client)
    assert seen_string_ids > 0
    assert report.count == simulator.truth().customers


async def test_exact_with_ten_percent_faults_injected() -> None:
    simulator = Simulator(
        SimulatorConfig(invoices=3000, customers=500, seed=4, rate=0, fault_rate=0.1)
    )
    simulator.faults.kinds = ("5xx", "drop", "truncated", "429")
    config = client_config(page_size=100)
    async with SimproClient(config, transport=simulator.transport()) as client:
        report = await scan_customers(client)
    assert report.count == simulator.truth().customers
    assert report.retries > 0


async def test_exact_over_real_http_with_faults(live_simulator: RunningSimulator) -> None:
    live_simulator.simulator.faults.rate = 0.1
    config = client_config(live_simulator.url, page_size=100, timeout=0.5)
    async with SimproClient(config) as client:
        report = await scan_customers(client)
    assert report.count == live_simulator.simulator.truth().customers
    assert report.total_invoices == live_simulator.simulator.truth().invoices


async def test_deletions_and_additions_during_the_scan_are_reconciled() -> None:
    simulator = Simulator(SimulatorConfig(invoices=2000, customers=400, seed=8, rate=0))
    ids = simulator.dataset.invoice_ids()

    def change_data(request_number: int) -> None:
        # Mid-scan: delete early invoices (shifting later pages) and add new ones.
        if request_number == 6:
            for invoice_id in ids[:30]:
                simulator.dataset.delete_invoice(invoice_id)
            for _ in range(5):
                simulator.dataset.add_invoice(total_ex_tax=Decimal("10.00"))

    simulator.hooks.append(change_data)
    async with SimproClient(
        client_config(page_size=50, max_in_flight=2), transport=simulator.transport()
    ) as client:
        report = await scan_customers(client)
    truth = simulator.truth()
    assert report.total_invoices == truth.invoices == 2000 - 30 + 5
    assert report.count == truth.customers
    assert report.reconciled > 0


async def test_data_that_never_settles_fails_instead_of_guessing() -> None:
    simulator = Simulator(SimulatorConfig(invoices=500, customers=80, seed=9, rate=0))

    def add_one(_request_number: int) -> None:
        simulator.dataset.add_invoice()

    simulator.hooks.append(add_one)
    async with SimproClient(client_config(page_size=50), transport=simulator.transport()) as client:
        with pytest.raises(ScanIncompleteError, match="kept changing"):
            await scan_customers(client, max_rounds=2)


async def test_an_invoice_without_id_is_a_precise_data_error(simulator: Simulator) -> None:
    def drop_an_id(body: list[Any]) -> list[Any]:
        if len(body) > 1:  # a page, not the one-record snapshot
            body[0] = {k: v for k, v in body[0].items() if k != "ID"}
        return body

    transport = RewriteBody(simulator.transport(), drop_an_id)
    async with SimproClient(client_config(), transport=transport) as client:
        with pytest.raises(SimproDataError, match=r"invoices page 1: invoice ID is missing"):
            await scan_customers(client)


async def test_a_non_numeric_customer_id_is_a_precise_data_error(simulator: Simulator) -> None:
    def bad_customer(body: list[Any]) -> list[Any]:
        for record in body:
            if record.get("Customer"):
                record["Customer"]["ID"] = "abc"
                break
        return body

    transport = RewriteBody(simulator.transport(), bad_customer)
    async with SimproClient(client_config(), transport=transport) as client:
        with pytest.raises(SimproDataError, match=r"Customer.ID is 'abc', not an integer"):
            await scan_customers(client)
