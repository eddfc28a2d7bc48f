"""The simulator at scale: a page's work is the page's, and the compact storage is exact.

Pages go through the in-process httpx transport, as a real client would; the work is
counted as the rows a table renders (`Table.rendered`), which is behaviour, not timing.
"""

from __future__ import annotations

import random
import tracemalloc
from decimal import Decimal
from email.utils import formatdate

import httpx
import pytest

from simpro_counter.simulator import Simulator, SimulatorConfig

AUTH = {"Authorization": "Bearer demo-key"}
INVOICES = "/api/v1.0/companies/0/invoices/"
START = 1_790_000_000.0  # a fixed "now" for the clock of the simulators below


class Clock:
    """A clock the test moves by hand, so DateModified values are known."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


async def rendered_for(sim: Simulator, params: dict[str, str], headers: dict[str, str]) -> int:
    """Rows rendered to answer one list request (its Result-Count is checked too)."""
    table = sim.dataset.tables["invoices"]
    before = table.rendered
    async with httpx.AsyncClient(
        transport=sim.transport(), base_url="http://sim", headers=AUTH
    ) as client:
        response = await client.get(INVOICES, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert int(response.headers["Result-Count"]) == len(response.json())
    return table.rendered - before


def changed_build(invoices: int, clock: Clock) -> Simulator:
    """A build where 7 invoices were changed one second after it was generated."""
    sim = Simulator(
        SimulatorConfig(invoices=invoices, customers=invoices // 10, seed=3, rate=0), clock=clock
    )
    clock.now = START + 1
    ids = sim.dataset.invoice_ids()
    for invoice_id in ids[:: len(ids) // 7][:7]:
        sim.dataset.update_invoice(invoice_id, total_ex_tax=Decimal("10.00"))
    return sim


# Requests as the scan and the sync send them: every answer is a page of at most 250.
REQUESTS: list[tuple[str, dict[str, str], dict[str, str], int]] = [
    ("page 3 by ID", {"orderby": "ID", "page": "3", "pageSize": "250"}, {}, 250),
    ("newest first", {"orderby": "-ID", "pageSize": "250"}, {}, 250),
    (
        "an ID range",
        {"orderby": "ID", "ID": "between(10500,10800)", "pageSize": "50", "columns": "ID,Total"},
        {},
        50,
    ),
    ("a count", {"ID": "ge(10100)", "pageSize": "1"}, {}, 1),
    (
        "If-Modified-Since",
        {"orderby": "ID", "pageSize": "250"},
        {"If-Modified-Since": http_date(START + 1)},
        7,
    ),
]


@pytest.fixture(scope="module")
def builds() -> tuple[Simulator, Simulator]:
    """The same build at 2,000 and 20,000 invoices (read only below)."""
    return changed_build(2_000, Clock()), changed_build(20_000, Clock())


@pytest.mark.parametrize(
    ("params", "headers", "rows"),
    [(params, headers, rows) for _, params, headers, rows in REQUESTS],
    ids=[name for name, *_ in REQUESTS],
)
async def test_a_page_renders_its_own_rows_whatever_the_size_of_the_build(
    builds: tuple[Simulator, Simulator], params: dict[str, str], headers: dict[str, str], rows: int
) -> None:
    small, large = builds
    small_work = await rendered_for(small, params, headers)
    large_work = await rendered_for(large, params, headers)
    # The previous simulator rendered every row of the build once and its lists sorted
    # all of them; here the work is the page: the same at 2,000 and 20,000 invoices.
    assert small_work == large_work == rows


async def test_if_modified_since_stays_exact_through_random_changes() -> None:
    """Updates, deletes and additions move records in the DateModified index; every
    cursor's answer is what a pass over all records says it should be."""
    clock = Clock()
    sim = Simulator(SimulatorConfig(invoices=1_500, customers=150, seed=11, rate=0), clock=clock)
    dataset = sim.dataset
    rng = random.Random(5)
    for step in range(120):
        clock.now = START + 1 + step // 10  # ten changes per second
        ids = dataset.invoice_ids()
        action = rng.random()
        if action < 0.6:
            dataset.update_invoice(rng.choice(ids), total_ex_tax=Decimal(rng.randint(1, 999)))
        elif action < 0.8:
            dataset.delete_invoice(rng.choice(ids))
        else:
            dataset.add_invoice()
    async with httpx.AsyncClient(
        transport=sim.transport(), base_url="http://sim", headers=AUTH
    ) as client:
        for since in range(int(START), int(START) + 14):
            expected = sorted(
                invoice_id
                for invoice_id in dataset.invoice_ids()
                if dataset.invoice(invoice_id).date_modified >= since
            )
            got: list[int] = []
            page = 1
            while True:
                response = await client.get(
                    INVOICES,
                    params={"orderby": "ID", "pageSize": 50, "page": page, "columns": "ID"},
                    headers={"If-Modified-Since": http_date(since)},
                )
                if response.status_code == 304:
                    break
                got += [int(item["ID"]) for item in response.json()]
                if page >= int(response.headers["Result-Pages"]):
                    break
                page += 1
            assert got == expected, since


def test_a_generated_build_is_compact() -> None:
    """Records live in columns: the whole build (jobs, quotes and customers included)
    takes a few hundred bytes per invoice; rendered rows took about 4 KB each."""
    invoices = 20_000
    tracemalloc.start()
    try:
        sim = Simulator(SimulatorConfig(invoices=invoices, customers=invoices // 10, rate=0))
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sim.truth().invoices == invoices
    print(f"simulated build: {held / invoices:.0f} bytes per invoice")
    assert held / invoices < 500, f"{held / invoices:.0f} bytes per invoice"
