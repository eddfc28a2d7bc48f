"""The simulator's Simpro resources: shapes, pagination, columns, filters, order, truth.

Everything goes through the in-process httpx transport, as a real client would.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from simpro_counter.simulator import Simulator, SimulatorConfig

AUTH = {"Authorization": "Bearer demo-key"}
INVOICES = "/api/v1.0/companies/0/invoices/"


@pytest.fixture(scope="module")
def sim() -> Simulator:
    # Read-only tests share one simulator; tests that change data make their own.
    return Simulator(SimulatorConfig(invoices=600, customers=90, seed=7, rate=0))


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=sim.transport(), base_url="http://sim", headers=AUTH
    ) as client:
        yield client


async def fetch_all(
    client: httpx.AsyncClient, path: str, **params: str | int
) -> list[dict[str, Any]]:
    """Every record of a list, page by page as a client would, checking the headers."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        response = await client.get(path, params={**params, "pageSize": 250, "page": page})
        assert response.status_code == 200, response.text
        batch = response.json()
        assert int(response.headers["Result-Count"]) == len(batch)
        items.extend(batch)
        if page >= int(response.headers["Result-Pages"]):
            assert len(items) == int(response.headers["Result-Total"])
            return items
        page += 1


def as_int(value: object) -> int:
    assert isinstance(value, int | str)
    return int(value)


async def test_info_and_companies(api: httpx.AsyncClient) -> None:
    info = (await api.get("/api/v1.0/info/")).json()
    assert info["MultiCompany"] is False
    assert info["Country"] == "Australia"
    assert isinstance(info["Version"], str)

    response = await api.get("/api/v1.0/companies/")
    assert response.json() == [{"ID": 0, "Name": "Simulated Services Pty Ltd"}]
    assert response.headers["Result-Total"] == "1"
    assert (await api.get("/api/v1.0/companies/0")).json()["ID"] == 0


async def test_other_companies_are_empty_and_unknown_ones_404() -> None:
    sim = Simulator(SimulatorConfig(invoices=20, customers=5, rate=0, company_ids=(3, 37)))
    async with httpx.AsyncClient(
        transport=sim.transport(), base_url="http://sim", headers=AUTH
    ) as client:
        assert (await client.get("/api/v1.0/info")).json()["MultiCompany"] is True
        companies = (await client.get("/api/v1.0/companies")).json()
        assert [c["ID"] for c in companies] == [3, 37]
        first = await client.get("/api/v1.0/companies/3/invoices/")
        assert first.headers["Result-Total"] == "20"
        other = await client.get("/api/v1.0/companies/37/invoices/")
        assert other.status_code == 200
        assert other.json() == []
        assert other.headers["Result-Total"] == "0"
        assert other.headers["Result-Pages"] == "0"
        missing = await client.get("/api/v1.0/companies/0/invoices/")
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["message"]


async def test_pagination_headers_and_limits(sim: Simulator, api: httpx.AsyncClient) -> None:
    total = sim.truth().invoices
    first = await api.get(INVOICES)
    assert first.status_code == 200
    assert len(first.json()) == 30  # the default page size
    assert first.headers["Result-Total"] == str(total)
    assert first.headers["Result-Pages"] == str(math.ceil(total / 30))
    assert first.headers["Result-Count"] == "30"

    # Simpro rejects an oversized page rather than capping it (SIMPRO.md).
    for oversized in (251, 1000):
        rejected = await api.get(INVOICES, params={"pageSize": oversized})
        assert rejected.status_code == 422
        assert rejected.json() == {
            "errors": [
                {
                    "path": "pageSize",
                    "message": "API query parameter should be an integer value between 1 - 250",
                    "value": str(oversized),
                }
            ]
        }
    largest = await api.get(INVOICES, params={"pageSize": 250})
    assert len(largest.json()) == 250
    assert largest.headers["Result-Pages"] == str(math.ceil(total / 250))

    pages = math.ceil(total / 250)
    last = await api.get(INVOICES, params={"pageSize": 250, "page": pages})
    assert len(last.json()) == total - 250 * (pages - 1)
    beyond = await api.get(INVOICES, params={"pageSize": 250, "page": pages + 1})
    assert beyond.status_code == 200
    assert beyond.json() == []
    assert beyond.headers["Result-Count"] == "0"

    for bad in ({"pageSize": 0}, {"pageSize": "ten"}, {"page": 0}, {"page": "x"}):
        response = await api.get(INVOICES, params=bad)
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["path"] in ("page", "pageSize")


async def test_trailing_slash_is_optional(api: httpx.AsyncClient) -> None:
    with_slash = await api.get(INVOICES, params={"pageSize": 5})
    without = await api.get(INVOICES.rstrip("/"), params={"pageSize": 5})
    assert with_slash.json() == without.json()
    detail = await api.get(f"{INVOICES}10001/")
    assert detail.status_code == 200


async def test_invoice_list_item_and_detail_shapes(api: httpx.AsyncClient) -> None:
    items = (await api.get(INVOICES, params={"pageSize": 50})).json()
    for item in items:
        assert list(item) == ["ID", "Type", "Customer", "Jobs", "Total", "IsPaid"]
        assert item["Type"] in ("TaxInvoice", "Deposit", "ProgressInvoice", "RequestForClaim")
        assert set(item["Total"]) == {
            "ExTax",
            "Tax",
            "IncTax",
            "ReverseChargeTax",
            "AmountApplied",
            "BalanceDue",
        }
        total = item["Total"]
        ex, tax, inc = (Decimal(str(total[k])) for k in ("ExTax", "Tax", "IncTax"))
        assert ex + tax == inc
        assert item["IsPaid"] == (Decimal(str(total["BalanceDue"])) <= 0)
        for job in item["Jobs"]:
            assert set(job) == {"ID", "Description", "Total"}
        if item["Customer"] is not None:
            keys = set(item["Customer"])
            assert keys in ({"ID", "CompanyName"}, {"ID", "GivenName", "FamilyName"})

    detail = (await api.get(f"{INVOICES}{as_int(items[0]['ID'])}")).json()
    assert date.fromisoformat(detail["DateIssued"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", detail["DateIssued"])
    modified = datetime.fromisoformat(detail["DateModified"])
    assert modified.tzinfo is not None
    assert modified.date() >= date.fromisoformat(detail["DateIssued"])
    assert detail["Stage"] in ("Approved", "Pending")
    assert set(detail["Status"]) == {"ID", "Name"}


async def test_detail_404s(api: httpx.AsyncClient) -> None:
    for path in (f"{INVOICES}1", f"{INVOICES}abc", "/api/v1.0/companies/0/widgets/"):
        response = await api.get(path)
        assert response.status_code == 404, path
        assert response.json()["errors"][0]["message"]


async def test_columns_select_fields_and_reject_unknown_ones(api: httpx.AsyncClient) -> None:
    response = await api.get(INVOICES, params={"columns": "ID,Customer,Total,DateIssued"})
    for item in response.json():
        assert list(item) == ["ID", "Customer", "Total", "DateIssued"]
        assert item["Customer"] is None or "ID" in item["Customer"]  # nested objects whole
    bad = await api.get(INVOICES, params={"columns": "ID,Foo"})
    assert bad.status_code == 422
    assert bad.json() == {
        "errors": [{"path": "columns", "message": "Invalid columns: Foo", "value": "Foo"}]
    }
    detail = await api.get(f"{INVOICES}10001", params={"columns": "ID,Stage"})
    assert list(detail.json()) == ["ID", "Stage"]


async def test_id_filters(sim: Simulator, api: httpx.AsyncClient) -> None:
    ids = sim.dataset.invoice_ids()
    low, high = ids[10], ids[40]

    above = await fetch_all(api, INVOICES, ID=f"gt({high})")
    assert [as_int(i["ID"]) for i in above] == [i for i in ids if i > high]
    below = await fetch_all(api, INVOICES, ID=f"lt({low})")
    assert [as_int(i["ID"]) for i in below] == [i for i in ids if i < low]
    between = await fetch_all(api, INVOICES, ID=f"between({low},{high})")
    assert [as_int(i["ID"]) for i in between] == ids[10:41]  # inclusive
    picked = await fetch_all(api, INVOICES, ID=f"in({ids[3]},{ids[5]},1)")
    assert [as_int(i["ID"]) for i in picked] == [ids[3], ids[5]]
    exact = await fetch_all(api, INVOICES, ID=str(ids[7]))
    assert [as_int(i["ID"]) for i in exact] == [ids[7]]
    others = await fetch_all(api, INVOICES, ID=f"ne({ids[7]})")
    assert len(others) == len(ids) - 1

    both = await api.get(INVOICES, params=[("ID", f"ge({low})"), ("ID", f"le({high})")])
    assert both.headers["Result-Total"] == "31"


async def test_field_filters(api: httpx.AsyncClient) -> None:
    everything = await fetch_all(api, INVOICES, columns="ID,Customer,Stage,Type,DateIssued")
    with_customer = [i for i in everything if i["Customer"] is not None]
    customer = as_int(with_customer[0]["Customer"]["ID"])
    expected = [i["ID"] for i in with_customer if as_int(i["Customer"]["ID"]) == customer]
    got = await fetch_all(api, INVOICES, **{"Customer.ID": customer})
    assert [i["ID"] for i in got] == expected

    some = sorted({as_int(i["Customer"]["ID"]) for i in with_customer})[:3]
    expected = [i["ID"] for i in with_customer if as_int(i["Customer"]["ID"]) in some]
    got = await fetch_all(api, INVOICES, **{"Customer.ID": f"in({','.join(map(str, some))})"})
    assert [i["ID"] for i in got] == expected

    pending = await fetch_all(api, INVOICES, Stage="Pending")
    assert len(pending) == sum(1 for i in everything if i["Stage"] == "Pending") > 0
    deposits = await fetch_all(api, INVOICES, Type="Deposit")
    assert len(deposits) == sum(1 for i in everything if i["Type"] == "Deposit") > 0
    cutoff = sorted(i["DateIssued"] for i in everything)[len(everything) // 2]
    recent = await fetch_all(api, INVOICES, DateIssued=f"ge({cutoff})")
    assert len(recent) == sum(1 for i in everything if i["DateIssued"] >= cutoff)

    either = await fetch_all(api, INVOICES, Stage="Pending", Type="Deposit", search="any")
    assert len(either) == sum(
        1 for i in everything if i["Stage"] == "Pending" or i["Type"] == "Deposit"
    )


async def test_bad_filters_are_422(api: httpx.AsyncClient) -> None:
    # Unknown fields are ignored by default, as Simpro does: test_simulator_strictness.py.
    for params in ({"ID": "foo(1)"}, {"ID": "between(1)"}, {"ID": "!between(1,2)"}):
        response = await api.get(INVOICES, params=params)
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["message"]


async def test_orderby(sim: Simulator, api: httpx.AsyncClient) -> None:
    ids = sim.dataset.invoice_ids()
    default = await fetch_all(api, INVOICES, columns="ID")
    assert [as_int(i["ID"]) for i in default] == ids
    descending = await fetch_all(api, INVOICES, orderby="-ID", columns="ID")
    assert [as_int(i["ID"]) for i in descending] == ids[::-1]
    by_date = await fetch_all(api, INVOICES, orderby="-DateIssued", columns="ID,DateIssued")
    dates = [i["DateIssued"] for i in by_date]
    assert dates == sorted(dates, reverse=True)
    page = await api.get(INVOICES, params={"orderby": "-ID", "ID": f"lt({ids[5]})"})
    assert [as_int(i["ID"]) for i in page.json()] == ids[4::-1]


async def test_quirks_are_present_and_stable(api: httpx.AsyncClient) -> None:
    first = await fetch_all(api, INVOICES)
    second = await fetch_all(api, INVOICES)
    assert first == second  # quirks are per record, not per request
    string_ids = [i["ID"] for i in first if isinstance(i["ID"], str)]
    assert 0 < len(string_ids) < len(first) / 5
    customers = [i["Customer"] for i in first if i["Customer"] is not None]
    assert any(isinstance(c["ID"], str) for c in customers)
    assert any(isinstance(c["ID"], int) for c in customers)
    assert any(i["Customer"] is None for i in first)
    # A record whose ID renders as a string is still found by a numeric filter.
    found = await api.get(INVOICES, params={"ID": string_ids[0]})
    assert [i["ID"] for i in found.json()] == [string_ids[0]]


async def test_truth_matches_a_manual_count(sim: Simulator, api: httpx.AsyncClient) -> None:
    invoices = await fetch_all(api, INVOICES)
    owners = {as_int(i["Customer"]["ID"]) for i in invoices if i["Customer"] is not None}
    revenue = sum((Decimal(str(i["Total"]["ExTax"])) for i in invoices), Decimal("0.00"))
    jobs = await api.get("/api/v1.0/companies/0/jobs/")
    quotes = await api.get("/api/v1.0/companies/0/quotes/")
    companies = await fetch_all(api, "/api/v1.0/companies/0/customers/companies/")
    individuals = await fetch_all(api, "/api/v1.0/companies/0/customers/individuals/")

    truth = sim.truth()
    assert truth.customers == len(owners)
    assert truth.invoices == len(invoices) == 600
    assert truth.invoices_without_customer == sum(1 for i in invoices if i["Customer"] is None)
    assert truth.revenue == revenue
    assert truth.jobs == int(jobs.headers["Result-Total"]) == round(1.3 * 600 / 2)
    assert truth.quotes == int(quotes.headers["Result-Total"]) == 300
    assert truth.companies == len(companies)
    assert truth.individuals == len(individuals)
    assert truth.companies + truth.individuals == 90
    assert truth.customers < 90  # not every customer has an invoice
    assert (await api.get("/__truth")).json() == truth.as_json()
    assert truth.as_json()["revenue"] == str(revenue)


async def test_customer_lists(api: httpx.AsyncClient) -> None:
    everyone = await fetch_all(api, "/api/v1.0/companies/0/customers/")
    companies = [c for c in everyone if "CompanyName" in c]
    people = [c for c in everyone if "GivenName" in c]
    assert len(companies) + len(people) == len(everyone) == 90
    assert 0.4 < len(companies) / len(everyone) < 0.8
    ids = [c["ID"] for c in everyone]
    assert ids == sorted(ids)
    assert ids[-1] > len(ids)  # gaps in the numbering

    person = people[0]["ID"]
    found = await api.get(f"/api/v1.0/companies/0/customers/individuals/{person}")
    assert found.json()["GivenName"] == people[0]["GivenName"]
    wrong_kind = await api.get(f"/api/v1.0/companies/0/customers/companies/{person}")
    assert wrong_kind.status_code == 404
    any_kind = await api.get(f"/api/v1.0/companies/0/customers/{person}")
    assert any_kind.status_code == 200


async def test_jobs_and_quotes(api: httpx.AsyncClient) -> None:
    for kind in ("jobs", "quotes"):
        items = (await api.get(f"/api/v1.0/companies/0/{kind}/")).json()
        assert all(list(item) == ["ID", "Description", "Total"] for item in items)
        detail = (await api.get(f"/api/v1.0/companies/0/{kind}/{items[0]['ID']}")).json()
        assert {"Customer", "Stage", "DateIssued", "DateModified"} <= set(detail)
        assert detail["Customer"]["ID"]


def test_same_seed_same_data_and_other_seed_other_data() -> None:
    config = SimulatorConfig(invoices=200, customers=30, seed=4, rate=0)
    one, two = Simulator(config), Simulator(config)
    other = Simulator(SimulatorConfig(invoices=200, customers=30, seed=5, rate=0))
    assert one.truth() == two.truth()
    first = [dict(r.detail) for r in one.dataset.tables["invoices"].ordered()]
    again = [dict(r.detail) for r in two.dataset.tables["invoices"].ordered()]
    assert first == again
    assert one.truth() != other.truth()


def test_benchmark_sized_data_set_is_quick_to_build() -> None:
    started = time.perf_counter()
    sim = Simulator(SimulatorConfig(invoices=25_000, customers=3000))
    elapsed = time.perf_counter() - started
    truth = sim.truth()
    assert truth.invoices == 25_000
    assert 0.01 < truth.invoices_without_customer / truth.invoices < 0.03
    assert elapsed < 5.0  # about 0.7 s here; generous for slow CI machines
