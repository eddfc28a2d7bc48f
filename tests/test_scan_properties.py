"""Property: for any dataset, page size, faults and changes, the scan is exact or fails cleanly."""

from __future__ import annotations

import asyncio
import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpro_counter.errors import SimproError
from simpro_counter.scan import scan_customers
from simpro_counter.simpro import SimproClient
from simpro_counter.simulator import Simulator, SimulatorConfig
from tests.conftest import client_config

FAULTS = st.sampled_from(["5xx", "drop", "truncated", "429", None, None])
# (when it happens, as a share of the page requests; what happens)
CHANGES = st.lists(
    st.tuples(st.floats(0, 1), st.sampled_from(["add", "delete", "move"])), max_size=6
)


@settings(
    max_examples=int(os.environ.get("SCAN_PROPERTY_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    invoices=st.integers(0, 700),
    customers=st.integers(1, 120),
    seed=st.integers(0, 10_000),
    page_size=st.integers(7, 250),
    faults=st.lists(FAULTS, max_size=12),
    fault_rate=st.sampled_from([0.0, 0.05, 0.2]),
    changes=CHANGES,
    in_flight=st.integers(1, 8),
)
def test_scan_is_exact_or_fails_cleanly(
    invoices: int,
    customers: int,
    seed: int,
    page_size: int,
    faults: list[str | None],
    fault_rate: float,
    changes: list[tuple[float, str]],
    in_flight: int,
) -> None:
    simulator = Simulator(
        SimulatorConfig(invoices=invoices, customers=customers, seed=seed, rate=0)
    )
    simulator.faults.kinds = ("5xx", "drop", "truncated", "429")
    simulator.faults.schedule.extend(faults)
    simulator.faults.rate = fault_rate
    # Changes land while pages are being read (the first `pages` requests are page reads
    # or the snapshot, retries or not); the scan must then end with the data as it stands.
    pages = max(1, math.ceil(invoices / page_size))
    planned: dict[int, list[str]] = {}
    for share, action in changes:
        planned.setdefault(1 + round(share * (pages - 1)), []).append(action)

    def apply_change(request_number: int) -> None:
        for action in planned.pop(request_number, []):
            ids = simulator.dataset.invoice_ids()
            if action == "add" or not ids:
                simulator.dataset.add_invoice()
            elif action == "delete":
                simulator.dataset.delete_invoice(ids[len(ids) // 3])
            else:
                simulator.dataset.update_invoice(ids[len(ids) // 2], customer_id=None)

    simulator.hooks.append(apply_change)

    async def scan() -> None:
        config = client_config(page_size=page_size, max_in_flight=in_flight)
        async with SimproClient(config, transport=simulator.transport()) as client:
            try:
                report = await scan_customers(client)
            except SimproError:
                return  # a clean failure is allowed; a wrong count is not
        truth = simulator.truth()
        assert report.total_invoices == truth.invoices
        assert report.count == truth.customers
        assert report.invoices_without_customer == truth.invoices_without_customer

    asyncio.run(scan())
