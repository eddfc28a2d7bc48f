"""Property: for any dataset, page size, faults and changes, on a build that searches on
`ID` and honours If-Modified-Since or on one that ignores either or both, the scan is
exact or fails cleanly, and says what the build ignored only when it did."""

from __future__ import annotations

import asyncio
import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpro_counter.build_quirks import ID_FILTERS, IF_MODIFIED_SINCE
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
    ignore_id_filters=st.booleans(),
    ignore_if_modified_since=st.booleans(),
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
    ignore_id_filters: bool,
    ignore_if_modified_since: bool,
) -> None:
    simulator = Simulator(
        SimulatorConfig(
            invoices=invoices,
            customers=customers,
            seed=seed,
            rate=0,
            ignore_id_filters=ignore_id_filters,
            ignore_if_modified_since=ignore_if_modified_since,
        )
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
        # Said only on proof, and said whenever the scan leaned on it: a range between
        # page 1 and the newest page (more than two pages, whatever the changes did), or
        # a catch-up answered with the seeded invoices, all modified before the scan.
        assert (ID_FILTERS in report.ignored) <= ignore_id_filters
        assert (IF_MODIFIED_SINCE in report.ignored) <= ignore_if_modified_since
        if ignore_if_modified_since and invoices > len(changes):
            assert IF_MODIFIED_SINCE in report.ignored
        if ignore_id_filters and invoices > 2 * page_size + len(changes):
            assert ID_FILTERS in report.ignored

    asyncio.run(scan())
