"""Property tests: the compact InvoiceFold agrees with a dict model and with the simulator.

The storage's thresholds are drawn small as well as at their defaults, so every path of
`InvoiceTable` (append, short-tail insert, side dict, batched merge, removed slots, IDs
beyond int64) is taken on random sequences of adds (duplicates, changes, filter
exclusions, bad records) and removals.
"""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpro_counter.errors import SimproDataError
from simpro_counter.metrics import InvoiceFilter, InvoiceFold, scan_columns
from simpro_counter.metrics.invoice_table import InvoiceTable
from simpro_counter.simpro import SimproClient
from simpro_counter.simulator import Simulator, SimulatorConfig
from tests.conftest import client_config
from tests.invoice_fold_model import ModelFold

BEYOND_INT64 = 2**63

invoice_ids = st.one_of(
    st.integers(0, 40),  # few IDs: many duplicates and changes
    st.integers(-5, 10**6),
    st.integers(BEYOND_INT64 - 2, BEYOND_INT64 + 2),  # either side of the int64 edge
    st.integers(-BEYOND_INT64 - 2, -BEYOND_INT64 + 1),
)
customer_ids = st.one_of(
    st.none(), st.integers(1, 6), st.integers(BEYOND_INT64 - 1, BEYOND_INT64 + 1)
)
amounts = st.one_of(
    st.integers(-(10**6), 10**6).map(lambda cents: cents / 100),
    st.integers(-(10**15) + 1, 10**15 - 1).map(lambda cents: f"{cents / 100:.2f}"),
)
issued = st.one_of(
    st.none(),
    st.dates(date(1990, 1, 1), date(2040, 12, 31)).map(date.isoformat),
    st.dates(date(1, 1, 1), date(9999, 12, 31)).map(lambda d: f"{d.isoformat()}T00:00:00"),
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, object]:
    invoice_id = draw(invoice_ids)
    customer = draw(customer_ids)
    return {
        "ID": str(invoice_id) if draw(st.booleans()) else invoice_id,
        "Customer": None if customer is None else {"ID": customer},
        "Total": {"ExTax": draw(amounts)},
        "DateIssued": draw(issued),
        "Stage": draw(st.sampled_from(["Approved", "Pending"])),
        "Type": "TaxInvoice",
    }


bad_records = st.sampled_from(
    [
        {"ID": 3, "Customer": None, "Total": {"ExTax": "abc"}, "Stage": "Approved"},
        {"ID": 3, "Customer": None, "Total": {"ExTax": 1e17}, "Stage": "Approved"},
        {"ID": 4, "Total": {"ExTax": 1}, "Stage": "Approved"},
        {"ID": 5, "Customer": None, "Total": {"ExTax": 1}, "DateIssued": "x", "Stage": "Approved"},
        {"ID": 6, "Customer": None, "Total": {"ExTax": 1}},  # bad under a stage filter only
    ]
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), records()),
        st.tuples(st.just("remove"), invoice_ids),
        st.tuples(st.just("bad"), bad_records),
    ),
    max_size=120,
)
storages = st.builds(
    InvoiceTable,
    short_tail=st.sampled_from([0, 1, 3, 4096]),
    merge_at=st.sampled_from([1, 2, 7, 4096]),
)
filters = st.sampled_from([InvoiceFilter(), InvoiceFilter.of(stages=["Approved"])])


def assert_agrees(fold: InvoiceFold, model: ModelFold) -> None:
    assert len(fold) == len(model.held)
    assert fold.ids() == model.ids()
    assert fold.invoices() == model.invoices()
    assert fold.customers() == model.customers()
    assert fold.invoices_without_customer() == model.invoices_without_customer()
    assert fold.revenue_cents() == model.revenue_cents()
    assert fold.first_invoice_date_by_customer() == model.first_invoice_date_by_customer()
    assert dict(fold.counted()) == model.counted()
    assert sorted(i for i, _ in fold.counted()) == sorted(model.counted())  # each ID once


@settings(max_examples=300, deadline=None)
@given(ops=operations, storage=storages, invoice_filter=filters)
def test_the_compact_fold_agrees_with_the_dict_model(
    ops: list[tuple[str, Any]], storage: InvoiceTable, invoice_filter: InvoiceFilter
) -> None:
    fold = InvoiceFold(invoice_filter, storage=storage)
    model = ModelFold(invoice_filter)
    for kind, argument in ops:
        if kind == "remove":
            assert fold.remove(argument) == model.remove(argument)
            assert argument not in fold
            continue
        try:  # a bad record (or one without Stage under a stage filter) must change nothing
            counts = model.add(argument)
        except SimproDataError:
            with pytest.raises(SimproDataError):
                fold.add(argument)
        else:
            assert fold.add(argument) == counts
        assert (fold.invoices(), fold.revenue_cents(), len(fold)) == (
            model.invoices(),
            model.revenue_cents(),
            len(model.held),
        )
        for invoice_id in list(model.held)[:3]:
            assert invoice_id in fold
    assert_agrees(fold, model)


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(st.tuples(st.just("add"), records()), min_size=1, max_size=60),
    storage=storages,
    bounds=st.tuples(st.none() | st.integers(-10, 50), st.none() | st.integers(-10, 50)),
    pivot=st.integers(-10, 50),
)
def test_id_ranges_and_counts_above(
    ops: list[tuple[str, dict[str, object]]],
    storage: InvoiceTable,
    bounds: tuple[int | None, int | None],
    pivot: int,
) -> None:
    fold = InvoiceFold(storage=storage)
    model = ModelFold()
    for _, record in ops:
        model.add(record)
        fold.add(record)
    for _, record in ops[::3]:  # leave removed slots behind
        invoice_id = int(str(record["ID"]))
        assert fold.remove(invoice_id) == model.remove(invoice_id)
    low, high = bounds
    expected = [i for i in model.ids() if (low is None or i >= low) and (high is None or i <= high)]
    assert fold.ids_between(low, high) == expected
    assert fold.count_above(pivot) == sum(1 for i in model.held if i > pivot)


# --- against the simulator's truth ----------------------------------------------------


@cache
def simulator_records() -> tuple[Simulator, tuple[dict[str, Any], ...]]:
    simulator = Simulator(SimulatorConfig(invoices=1500, customers=300, seed=33, rate=0))

    async def read() -> list[dict[str, Any]]:
        async with SimproClient(client_config(), transport=simulator.transport()) as client:
            return [r async for r in client.records("invoices", columns=scan_columns())]

    return simulator, tuple(asyncio.run(read()))


def scan_order(records: list[dict[str, Any]], rng: random.Random, size: int) -> list[Any]:
    """Pages as a scan may meet them: shuffled, some reversed (like the page ordered by
    -ID), some read twice (overlapping re-reads)."""
    pages = [records[i : i + size] for i in range(0, len(records), size)]
    rng.shuffle(pages)
    pages += rng.sample(pages, k=len(pages) // 4)
    return [r for page in pages for r in (reversed(page) if rng.random() < 0.3 else page)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), size=st.sampled_from([1, 50, 250]), storage=storages)
def test_any_scan_order_equals_the_simulator_truth(
    seed: int, size: int, storage: InvoiceTable
) -> None:
    simulator, records = simulator_records()
    truth = simulator.truth()
    fold = InvoiceFold(storage=storage)
    rng = random.Random(seed)
    fold.add_all(scan_order(list(records), rng, size))
    assert (fold.customers(), fold.invoices(), fold.revenue()) == (
        truth.customers,
        truth.invoices,
        truth.revenue,
    )
    assert fold.invoices_without_customer() == truth.invoices_without_customer
    assert fold.first_invoice_date_by_customer() == simulator.dataset.first_invoice_dates()
    assert fold.ids() == simulator.dataset.invoice_ids()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), storage=storages)
def test_changes_and_deletions_equal_the_simulator_truth(seed: int, storage: InvoiceTable) -> None:
    """Fold a scan, change the build (moves, re-pricing, deletions, new invoices), fold
    what changed: the result is the changed build's truth."""
    rng = random.Random(seed)
    simulator = Simulator(SimulatorConfig(invoices=400, customers=60, seed=seed % 1000, rate=0))

    async def read() -> list[dict[str, Any]]:
        async with SimproClient(client_config(), transport=simulator.transport()) as client:
            return [r async for r in client.records("invoices", columns=scan_columns())]

    fold = InvoiceFold(storage=storage)
    fold.add_all(scan_order(asyncio.run(read()), rng, 25))
    dataset = simulator.dataset
    customers = dataset.customer_ids()
    ids = dataset.invoice_ids()
    deleted = set(rng.sample(ids, 20))
    for invoice_id in rng.sample([i for i in ids if i not in deleted], 40):
        dataset.update_invoice(invoice_id, customer_id=rng.choice([None, *customers]))
    for invoice_id in deleted:
        dataset.delete_invoice(invoice_id)
    for _ in range(10):
        dataset.add_invoice()
    for invoice_id in deleted:
        assert fold.remove(invoice_id)
    fold.add_all(scan_order(asyncio.run(read()), rng, 40))  # every current record again
    truth = simulator.truth()
    assert (fold.customers(), fold.invoices(), fold.revenue()) == (
        truth.customers,
        truth.invoices,
        truth.revenue,
    )
    assert fold.first_invoice_date_by_customer() == dataset.first_invoice_dates()
    assert len(fold) == truth.invoices


def test_the_default_storage_merges_a_scan_without_side_entries() -> None:
    """A scan's order (page 1, the newest page by -ID, the pages between) is stored by
    appends and short-tail inserts: nothing waits in the side dict."""
    storage = InvoiceTable()
    fold = InvoiceFold(storage=storage)
    start = date(2020, 1, 1)
    ids = list(range(1, 20_001))
    order = ids[:250] + ids[-250:][::-1] + ids[250:-250]
    for invoice_id in order:
        fold.put(invoice_id, (invoice_id % 300, 100, start + timedelta(days=invoice_id % 900)))
    assert storage._side == {}
    assert fold.ids() == ids
    assert storage.nbytes() == 29 * len(ids)
