"""The simulator as strict and as lax as Simpro (SIMPRO.md), over real HTTP.

Unknown query fields are ignored (a typo returns every record) unless the build is set
to reject them; pageSize above 250 is refused with Simpro's words, never capped; lists
take `limit`, `!in(...)`, `ne()` and `%` wildcards; invoices carry `InternalID`,
`RecurringInvoice` and `Total.ReverseChargeTax`, and the client's scan still reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from simpro_counter.metrics import InvoiceFilter
from simpro_counter.metrics.invoices import parse_invoice
from simpro_counter.scan import scan_invoices
from simpro_counter.settings import Settings
from simpro_counter.simpro import SimproClient, SimproConfig
from simpro_counter.simulator import RunningSimulator, SimulatorConfig, running_simulator
from simpro_counter.simulator.query import MAX_PAGE_SIZE, PAGE_SIZE_MESSAGE
from simpro_counter.simulator.records import RECURRING_EVERY, internal_id
from tests.conftest import client_config

AUTH = {"Authorization": "Bearer demo-key"}
INVOICES = "/api/v1.0/companies/0/invoices/"
HOOKS = "/api/v1.0/companies/0/setup/webhooks/"
SMALL: dict[str, Any] = {"invoices": 300, "customers": 60, "seed": 11, "rate": 0}


@pytest.fixture(scope="module")
def lax() -> Iterator[RunningSimulator]:
    """A build as Simpro is: unknown query fields ignored (the default)."""
    with running_simulator(SimulatorConfig(**SMALL)) as running:
        yield running


@pytest.fixture(scope="module")
def strict() -> Iterator[RunningSimulator]:
    with running_simulator(SimulatorConfig(**SMALL, unknown_query_fields="reject")) as running:
        yield running


@pytest.fixture
def http(lax: RunningSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lax.url, headers=AUTH, timeout=10.0) as client:
        yield client


def every_id(client: httpx.Client, **params: str | int) -> list[int]:
    """The IDs of every record a list query matches, page by page, headers checked."""
    ids: list[int] = []
    page = 1
    while True:
        response = client.get(
            INVOICES, params={**params, "columns": "ID", "pageSize": 250, "page": page}
        )
        assert response.status_code == 200, response.text
        ids.extend(int(item["ID"]) for item in response.json())
        if page >= int(response.headers["Result-Pages"]):
            assert len(ids) == int(response.headers["Result-Total"])
            return ids
        page += 1


def test_unknown_fields_are_ignored_by_default(lax: RunningSimulator, http: httpx.Client) -> None:
    everything = lax.simulator.dataset.invoice_ids()
    # A typo in a filter's field filters nothing, as on Simpro: every record comes back.
    assert every_id(http, **{"Custmer.ID": "52"}) == everything
    assert every_id(http, Nope="between(1,2)", Stage="Pending") == [
        int(item["ID"]) for item in _all(http, "ID,Stage") if item["Stage"] == "Pending"
    ]
    # An unknown orderby field is dropped too: Simpro's default order, ID ascending.
    assert every_id(http, orderby="-Nope") == everything
    # A known field with a bad operator still answers 422.
    assert http.get(INVOICES, params={"ID": "nope(1)"}).status_code == 422


def test_unknown_fields_answer_422_when_the_build_rejects_them(strict: RunningSimulator) -> None:
    with httpx.Client(base_url=strict.url, headers=AUTH, timeout=10.0) as client:
        for params in ({"Custmer.ID": "52"}, {"orderby": "-Nope"}):
            response = client.get(INVOICES, params=params)
            assert response.status_code == 422, params
            (error,) = response.json()["errors"]
            assert error["message"].startswith("Invalid field:")
        # The webhook list follows the same rule.
        assert client.get(HOOKS, params={"Colour": "red"}).status_code == 422
        assert client.get(HOOKS, params={"Name": "x"}).status_code == 200


def test_the_webhook_list_ignores_unknown_fields_by_default(http: httpx.Client) -> None:
    assert http.get(HOOKS, params={"Colour": "red"}).status_code == 200


@pytest.mark.parametrize("size", ["251", "1000", "0", "-1", "ten", ""])
def test_page_size_outside_1_to_250_is_refused_in_simpros_words(
    http: httpx.Client, size: str
) -> None:
    response = http.get(INVOICES, params={"pageSize": size})
    assert response.status_code == 422
    assert response.json() == {
        "errors": [{"path": "pageSize", "message": PAGE_SIZE_MESSAGE, "value": size}]
    }
    assert PAGE_SIZE_MESSAGE == "API query parameter should be an integer value between 1 - 250"


def test_the_client_never_asks_for_more_than_250(lax: RunningSimulator) -> None:
    assert SimproConfig(base_url="http://x", api_key=SecretStr("k")).page_size <= MAX_PAGE_SIZE
    assert Settings(simpro_page_size=250).simpro_page_size == 250
    with pytest.raises(ValidationError):
        Settings(simpro_page_size=251)


async def test_a_scan_reads_the_new_invoice_fields_and_stays_exact(
    lax: RunningSimulator,
) -> None:
    sim = lax.simulator
    sim.stats.reset()
    async with SimproClient(client_config(lax.url)) as client:
        report, _ = await scan_invoices(client)
    truth = sim.truth()
    assert (report.count, report.total_invoices) == (truth.customers, truth.invoices)
    assert report.revenue_cents == int(truth.revenue * 100)
    # No request refused: no pageSize above 250, no query the build answered 422.
    assert sim.stats.by_status[200] > 0
    assert set(sim.stats.by_status) <= {200, 304}  # 304: the catch-up found no change


def test_limit_caps_the_records_matched(lax: RunningSimulator, http: httpx.Client) -> None:
    ids = lax.simulator.dataset.invoice_ids()
    first = http.get(INVOICES, params={"limit": 7, "pageSize": 3, "columns": "ID"})
    assert (first.headers["Result-Total"], first.headers["Result-Pages"]) == ("7", "3")
    assert every_id(http, limit=7) == ids[:7]
    assert every_id(http, limit=5, orderby="-ID") == ids[::-1][:5]
    assert every_id(http, limit=10**6) == ids
    for bad in ("0", "x"):
        response = http.get(INVOICES, params={"limit": bad})
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == "limit"


def test_not_in_ne_and_wildcards(lax: RunningSimulator, http: httpx.Client) -> None:
    ids = lax.simulator.dataset.invoice_ids()
    items = _all(http, "ID,Customer,Type,RecurringInvoice")
    assert every_id(http, ID=f"!in({ids[0]},{ids[5]})") == [i for i in ids if i not in ids[:6:5]]

    owners = sorted({int(i["Customer"]["ID"]) for i in items if i["Customer"] is not None})
    excluded = set(owners[:3])
    # Like ne(x), !in(...) lets through a record whose field is null.
    assert every_id(http, **{"Customer.ID": f"!in({','.join(map(str, excluded))})"}) == [
        int(i["ID"])
        for i in items
        if i["Customer"] is None or int(i["Customer"]["ID"]) not in excluded
    ]
    # ne() with no value: the field is not null.
    with_customer = [int(i["ID"]) for i in items if i["Customer"] is not None]
    assert len(with_customer) < len(ids)  # the data set has invoices without customer
    assert every_id(http, **{"Customer.ID": "ne()"}) == with_customer
    recurring = every_id(http, **{"RecurringInvoice.ID": "ne()"})
    assert recurring == [i for i in ids if i % RECURRING_EVERY == 0]
    assert recurring

    # %25 in the URL is a % wildcard.
    response = http.get(f"{INVOICES}?Type=%25Invoice&columns=ID,Type&pageSize=250")
    assert response.status_code == 200
    types = {item["Type"] for item in response.json()}
    assert types == {i["Type"] for i in items if str(i["Type"]).endswith("Invoice")}
    assert "TaxInvoice" in types
    assert "Deposit" not in types


def test_invoices_carry_internal_id_recurring_invoice_and_reverse_charge_tax(
    lax: RunningSimulator, http: httpx.Client
) -> None:
    ids = lax.simulator.dataset.invoice_ids()
    recurring_id = next(i for i in ids if i % RECURRING_EVERY == 0)
    for invoice_id in (ids[0], recurring_id):
        detail = http.get(f"{INVOICES}{invoice_id}").json()
        assert detail["InternalID"] == internal_id(invoice_id) != invoice_id
        assert detail["Total"]["ReverseChargeTax"] == 0.0
        parsed_id, entry = parse_invoice(detail, InvoiceFilter())  # the client's parser
        assert parsed_id == invoice_id
        assert entry is not None
        if invoice_id == recurring_id:
            assert set(detail["RecurringInvoice"]) == {"ID"}
        else:
            assert detail["RecurringInvoice"] is None
    # The InternalID is not an ID the API's invoices/{id} knows: mixing them up finds nothing.
    assert http.get(f"{INVOICES}{internal_id(ids[0])}").status_code == 404
    # It can be asked for and filtered on like any field.
    picked = http.get(
        INVOICES, params={"InternalID": str(internal_id(ids[3])), "columns": "ID,InternalID"}
    )
    assert picked.json() == [{"ID": _as_sent(http, ids[3]), "InternalID": internal_id(ids[3])}]


def _all(client: httpx.Client, columns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        response = client.get(INVOICES, params={"columns": columns, "pageSize": 250, "page": page})
        assert response.status_code == 200, response.text
        items.extend(response.json())
        if page >= int(response.headers["Result-Pages"]):
            return items
        page += 1


def _as_sent(client: httpx.Client, invoice_id: int) -> object:
    """The invoice's ID as the build renders it (some IDs are strings)."""
    return client.get(f"{INVOICES}{invoice_id}", params={"columns": "ID"}).json()["ID"]
