"""metrics: the invoice fold, exact against the simulator's truth, and its parsing rules."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from simpro_counter.errors import SimproDataError
from simpro_counter.metrics import (
    METRICS,
    InvoiceFilter,
    InvoiceFold,
    growth_history,
    invoice_metrics,
    result_total_metrics,
    scan_columns,
)
from simpro_counter.simpro import SimproClient
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.simulator.records import Invoice
from tests.conftest import client_config


def invoice(
    invoice_id: object,
    customer: object = 52,
    ex_tax: object = 100.0,
    issued: str | None = "2024-03-05",
    **extra: object,
) -> dict[str, object]:
    record: dict[str, object] = {
        "ID": invoice_id,
        "Customer": None if customer is None else {"ID": customer, "CompanyName": "Acme"},
        "Total": {"ExTax": ex_tax, "Tax": 0.0, "IncTax": ex_tax},
        "DateIssued": issued,
    }
    record.update(extra)
    return record


# --- definitions --------------------------------------------------------------------


def test_registry_and_scan_columns() -> None:
    assert set(METRICS) == {"customers", "invoices", "jobs", "quotes", "revenue"}
    assert [m.name for m in invoice_metrics()] == ["customers", "invoices", "revenue"]
    assert [m.name for m in result_total_metrics()] == ["jobs", "quotes"]
    columns = scan_columns()
    assert columns[0] == "ID"
    assert len(set(columns)) == len(columns)
    assert set(columns) == {"ID", "Customer", "Total", "DateIssued", "Type", "Stage"}
    for metric in invoice_metrics():
        assert set(metric.columns) <= set(columns)
    assert METRICS["revenue"].kind == "sum"
    assert METRICS["customers"].kind == "distinct"
    assert METRICS["revenue"].format(Decimal("12.5")) == "12.50"
    assert METRICS["customers"].format(450) == "450"
    with pytest.raises(ValueError, match="whole number"):
        METRICS["jobs"].format(Decimal("1.5"))


# --- against the simulator ----------------------------------------------------------


async def read_invoices(simulator: Simulator) -> list[dict[str, Any]]:
    async with SimproClient(client_config(), transport=simulator.transport()) as client:
        return [r async for r in client.records("invoices", columns=scan_columns())]


def expected_first_dates(invoices: list[Invoice]) -> dict[int, date]:
    first: dict[int, date] = {}
    for inv in invoices:
        if inv.customer_id is not None:
            known = first.get(inv.customer_id)
            first[inv.customer_id] = (
                inv.date_issued if known is None else min(known, inv.date_issued)
            )
    return first


@pytest.fixture(scope="module")
def sim_and_records() -> tuple[Simulator, list[dict[str, Any]]]:
    simulator = Simulator(SimulatorConfig(invoices=2000, customers=400, seed=21, rate=0))
    return simulator, asyncio.run(read_invoices(simulator))


def test_fold_equals_the_simulator_truth(
    sim_and_records: tuple[Simulator, list[dict[str, Any]]],
) -> None:
    simulator, records = sim_and_records
    truth = simulator.truth()
    # The simulator's quirks are really exercised.
    assert any(isinstance(r["ID"], str) for r in records)
    assert any(
        isinstance(r["Customer"], dict) and isinstance(r["Customer"]["ID"], str) for r in records
    )
    assert any(r["Customer"] is None for r in records)
    fold = InvoiceFold()
    assert fold.add_all(records, "invoices") == truth.invoices
    assert fold.customers() == truth.customers
    assert fold.invoices() == truth.invoices
    assert fold.invoices_without_customer() == truth.invoices_without_customer
    assert fold.revenue() == truth.revenue  # to the cent
    assert str(fold.revenue()) == str(truth.revenue)
    ids = simulator.dataset.invoice_ids()
    invoices = [simulator.dataset.invoice(i) for i in ids]
    first = fold.first_invoice_date_by_customer()
    assert first == expected_first_dates(invoices)
    for interval in ("month", "quarter", "year"):
        history = growth_history(first, interval)
        assert history[-1].cumulative == truth.customers


def test_reading_everything_twice_counts_once(
    sim_and_records: tuple[Simulator, list[dict[str, Any]]],
) -> None:
    simulator, records = sim_and_records
    truth = simulator.truth()
    fold = InvoiceFold()
    fold.add_all(records)
    fold.add_all(reversed(records))
    assert (fold.customers(), fold.invoices(), fold.revenue()) == (
        truth.customers,
        truth.invoices,
        truth.revenue,
    )


@pytest.mark.parametrize(
    ("types", "stages"),
    [(None, {"Approved"}), ({"Deposit"}, None), ({"TaxInvoice", "ProgressInvoice"}, {"Pending"})],
)
def test_the_filter_against_the_simulator(
    sim_and_records: tuple[Simulator, list[dict[str, Any]]],
    types: set[str] | None,
    stages: set[str] | None,
) -> None:
    simulator, records = sim_and_records
    kept = [
        inv
        for inv in (simulator.dataset.invoice(i) for i in simulator.dataset.invoice_ids())
        if (types is None or inv.type in types) and (stages is None or inv.stage in stages)
    ]
    assert 0 < len(kept) < simulator.truth().invoices
    fold = InvoiceFold(InvoiceFilter.of(types=types, stages=stages))
    assert fold.add_all(records) == len(kept)
    assert fold.invoices() == len(kept)
    assert fold.customers() == len({i.customer_id for i in kept if i.customer_id is not None})
    assert fold.revenue_cents() == sum(i.ex_tax for i in kept)
    assert fold.first_invoice_date_by_customer() == expected_first_dates(kept)


async def test_result_total_metrics_cost_one_request_each() -> None:
    simulator = Simulator(SimulatorConfig(invoices=300, customers=50, seed=2, rate=0))
    truth = simulator.truth()
    async with SimproClient(client_config(), transport=simulator.transport()) as client:
        before = client.stats.requests
        values = {m.name: await client.count(m.resource) for m in result_total_metrics()}
        assert client.stats.requests - before == len(values)
    assert values == {"jobs": truth.jobs, "quotes": truth.quotes}


# --- update semantics ---------------------------------------------------------------


def test_string_ids_and_null_customers() -> None:
    fold = InvoiceFold()
    fold.add(invoice(1, customer=52))
    fold.add(invoice("2", customer="52"))
    fold.add(invoice(" 3 ", customer=None))
    assert fold.invoices() == 3
    assert fold.customers() == 1
    assert fold.invoices_without_customer() == 1
    fold.add(invoice(3, customer=None))  # "3" and 3 are one invoice
    assert fold.invoices() == 3
    assert fold.ids() == [1, 2, 3]


def test_re_adding_replaces_and_remove_forgets() -> None:
    fold = InvoiceFold()
    fold.add(invoice(1, customer=10, ex_tax=0.1))
    fold.add(invoice(2, customer=10, ex_tax=0.2))
    assert fold.revenue() == Decimal("0.30")  # not 0.30000000000000004
    fold.add(invoice(2, customer=11, ex_tax=735.34, issued="2023-01-01"))  # moved, re-priced
    assert fold.customers() == 2
    assert fold.revenue() == Decimal("735.44")
    assert fold.first_invoice_date_by_customer() == {10: date(2024, 3, 5), 11: date(2023, 1, 1)}
    assert fold.remove(1)
    assert not fold.remove(1)
    assert fold.customers() == 1
    assert fold.revenue() == Decimal("735.34")
    fold.add(invoice(2, customer=None, ex_tax=5))
    assert (fold.customers(), fold.invoices_without_customer()) == (0, 1)
    assert fold.remove(2)
    assert (fold.invoices(), fold.customers(), fold.revenue()) == (0, 0, Decimal("0.00"))
    assert str(fold.revenue()) == "0.00"


def test_an_invoice_leaving_the_filter_drops_out() -> None:
    fold = InvoiceFold(InvoiceFilter.of(stages=["Approved"]))
    assert fold.add(invoice(1, Stage="Approved", Type="TaxInvoice"))
    assert fold.invoices() == 1
    assert not fold.add(invoice(1, Stage="Pending", Type="TaxInvoice"))
    assert (fold.invoices(), fold.customers(), fold.revenue()) == (0, 0, Decimal("0.00"))
    with pytest.raises(SimproDataError, match="invoice 2 has no Stage field"):
        fold.add(invoice(2))
    assert InvoiceFold().filter.counts_everything  # the default counts every invoice
    assert InvoiceFold().add(invoice(2))  # ... and needs neither Type nor Stage


def test_money_is_exact_and_rounded_to_cents() -> None:
    fold = InvoiceFold()
    amounts = [735.34, 0.1, 0.2, "19.99", 7, -12.5, 1e6, Decimal("0.005")]
    for n, amount in enumerate(amounts):
        fold.add(invoice(n, ex_tax=amount))
    assert fold.revenue() == Decimal("735.34") + Decimal("0.1") + Decimal("0.2") + Decimal(
        "19.99"
    ) + 7 - Decimal("12.5") + 1000000 + Decimal("0.01")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"ID": 7, "Customer": None}, "invoice 7 has no Total field"),
        ({"ID": 7, "Customer": None, "Total": None}, "invoice 7: Total is None, not an object"),
        ({"ID": 7, "Customer": None, "Total": {"Tax": 1.0}}, "invoice 7: Total has no ExTax"),
        ({"ID": 7, "Customer": None, "Total": {"ExTax": None}}, "Total.ExTax is None"),
        ({"ID": 7, "Customer": None, "Total": {"ExTax": "abc"}}, "Total.ExTax is 'abc'"),
        ({"ID": 7, "Customer": None, "Total": {"ExTax": True}}, "Total.ExTax is True"),
        ({"ID": 7, "Customer": None, "Total": {"ExTax": float("nan")}}, "not a finite number"),
        ({"ID": 7, "Customer": None, "Total": {"ExTax": 1e17}}, "beyond any real invoice"),
        ({"ID": 7, "Customer": None, "Total": {"ExTax": "-1e13"}}, "beyond any real invoice"),
        ({"ID": 7, "Total": {"ExTax": 1}}, "invoice 7 has no Customer field"),
        ({"ID": 7, "Customer": 5, "Total": {"ExTax": 1}}, "Customer is 5, not an object"),
        ({"ID": 7, "Customer": {}, "Total": {"ExTax": 1}}, "Customer.ID is missing"),
        ({"Customer": None, "Total": {"ExTax": 1}}, "page 2: invoice ID is missing"),
        (
            {"ID": 7, "Customer": None, "Total": {"ExTax": 1}, "DateIssued": "05/03/2024"},
            "DateIssued is '05/03/2024', not a date",
        ),
        (
            {"ID": 7, "Customer": None, "Total": {"ExTax": 1}, "DateIssued": 20240305},
            "DateIssued is 20240305",
        ),
    ],
)
def test_bad_records_are_precise_errors_and_change_nothing(
    record: dict[str, object], message: str
) -> None:
    fold = InvoiceFold()
    fold.add(invoice(7, customer=1, ex_tax=3.0))
    with pytest.raises(SimproDataError, match=message):
        fold.add(record, "page 2")
    assert (fold.invoices(), fold.customers(), fold.revenue()) == (1, 1, Decimal("3.00"))


def test_dates_with_time_and_undated_invoices() -> None:
    fold = InvoiceFold()
    fold.add(invoice(1, customer=1, issued="2024-03-05T00:00:00+10:00"))
    fold.add(invoice(2, customer=2, issued=None))
    fold.add({"ID": 3, "Customer": {"ID": 2}, "Total": {"ExTax": 1}})  # column not asked for
    assert fold.first_invoice_date_by_customer() == {1: date(2024, 3, 5)}
    assert fold.undated_customers() == 1


# --- memory -------------------------------------------------------------------------

N = 100_000
# The compact storage holds 29 bytes per invoice plus growth slack (measured: about 33
# with the per-customer counts); the dict of tuples it replaced held about 186.
MAX_BYTES_PER_INVOICE = 100


def synthetic_record(n: int) -> dict[str, object]:
    """A fresh record per call, as JSON decoding makes them."""
    return {
        "ID": 100_000 + n,
        "Type": "TaxInvoice",
        "Customer": {"ID": int(str(1000 + n % 5000)), "CompanyName": f"Company {n % 5000}"},
        "Total": {"ExTax": (n * 7919 % 500_000) / 100, "Tax": 1.0, "IncTax": 2.0},
        "DateIssued": (date(2018, 1, 1) + timedelta(days=n % 2500)).isoformat(),
        "Stage": "Approved",
    }


def scan_order(count: int) -> list[int]:
    """A scan's order: page 1, the page of newest invoices (by -ID), the pages between."""
    return [*range(250), *range(count - 1, count - 251, -1), *range(250, count - 250)]


def traced_fold(order: Iterable[int]) -> tuple[InvoiceFold, int, int]:
    """The fold of the records in `order`, the bytes it holds and the peak while folding."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fold = InvoiceFold()
        fold.add_all(synthetic_record(n) for n in order)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return fold, held - before, peak - before


def test_memory_per_invoice(capsys: pytest.CaptureFixture[str]) -> None:
    fold, held, peak = traced_fold(scan_order(N))
    assert fold.invoices() == N
    assert fold.customers() == 5000
    with capsys.disabled():
        print(
            f"\nInvoiceFold: {held / 1e6:.1f} MB for {N} invoices, {held / N:.0f} B/invoice "
            f"(peak {peak / N:.0f} B/invoice)"
        )
    assert held / N < MAX_BYTES_PER_INVOICE
    assert peak / N < MAX_BYTES_PER_INVOICE  # one record at a time: nothing else grows


def test_memory_per_invoice_in_any_order() -> None:
    """Out of order, invoices wait in the side dict and are merged in batches: the side
    dict and the column copied during a merge stay within the same budget."""
    count = 60_000
    order = random.Random(7).sample(range(count), count)
    fold, held, peak = traced_fold(order)
    assert fold.ids() == [100_000 + n for n in range(count)]
    assert held / count < MAX_BYTES_PER_INVOICE
    assert peak / count < MAX_BYTES_PER_INVOICE
