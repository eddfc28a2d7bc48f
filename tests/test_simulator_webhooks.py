"""The simulator's webhooks: subscription API, signed deliveries, retries, the log.

Receivers are real: a Starlette app reached through an injected ASGI transport
(in-process, deliveries sent by `await sim.webhooks.flush()`), or the same app
under uvicorn on a free port, fed in the background by a running simulator.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from simpro_counter.simulator import Simulator, SimulatorConfig, running_simulator
from tests.webhook_receivers import Receiver, serve_receiver, verify, wait_for

AUTH = {"Authorization": "Bearer demo-key"}
HOOKS = "/api/v1.0/companies/0/setup/webhooks/"
SECRET = "s3cret"
SMALL: dict[str, Any] = {"invoices": 40, "customers": 8, "seed": 3, "rate": 0.0}


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


def in_process(receiver: Receiver, **config: Any) -> Simulator:
    return Simulator(
        SimulatorConfig(**{**SMALL, **config}),
        webhook_transport=httpx.ASGITransport(app=receiver.app),
    )


@pytest.fixture
def served_receiver(receiver: Receiver) -> Iterator[str]:
    """The receiver under uvicorn on a free port; yields its /hook URL."""
    with serve_receiver(receiver) as url:
        yield url


@pytest.fixture
async def api_for() -> AsyncIterator[Callable[[Simulator], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(sim: Simulator) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=sim.transport(), base_url="http://sim", headers=AUTH)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def body(**fields: object) -> dict[str, object]:
    return {
        "Name": "Counter",
        "CallbackURL": "http://receiver/hook",
        "Secret": SECRET,
        "Events": ["invoice.created", "invoice.updated", "invoice.deleted"],
        **fields,
    }


async def test_subscription_crud_with_auth(
    receiver: Receiver, api_for: Callable[[Simulator], httpx.AsyncClient]
) -> None:
    sim = in_process(receiver)
    api = api_for(sim)
    assert (await api.get(HOOKS, headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (await api.post(HOOKS, json=body(), headers={"Authorization": ""})).status_code == 401

    created = await api.post(
        HOOKS, json=body(Description="for the counter", Email="ops@example.com")
    )
    assert created.status_code == 201, created.text
    doc = created.json()
    sub_id = doc["ID"]
    assert datetime.fromisoformat(doc.pop("DateCreated")).tzinfo is not None
    assert doc == {
        "ID": sub_id,
        "Name": "Counter",
        "CallbackURL": "http://receiver/hook",
        "Secret": SECRET,
        "Email": "ops@example.com",
        "Events": ["invoice.created", "invoice.updated", "invoice.deleted"],
        "Status": "Enabled",
        "Description": "for the counter",
    }
    doc = created.json()
    assert (await api.get(f"{HOOKS}{sub_id}")).json() == doc
    assert (await api.get(f"{HOOKS}{sub_id}", params={"columns": "ID,Status"})).json() == {
        "ID": sub_id,
        "Status": "Enabled",
    }

    # PATCH answers 204 without a body, as Simpro does; a GET shows the change.
    patched = await api.patch(f"{HOOKS}{sub_id}", json={"Status": "Disabled", "Name": "Off"})
    assert patched.status_code == 204, patched.text
    assert patched.content == b""
    assert (await api.get(f"{HOOKS}{sub_id}")).json() == {
        **doc,
        "Status": "Disabled",
        "Name": "Off",
    }

    # The list is paginated like every Simpro list and shows only ID and Name unless
    # columns asks for more.
    for n in range(2):
        assert (await api.post(HOOKS, json=body(Name=f"extra {n}"))).status_code == 201
    page = await api.get(HOOKS.rstrip("/"), params={"pageSize": 2})
    assert page.status_code == 200
    assert (page.headers["Result-Total"], page.headers["Result-Pages"]) == ("3", "2")
    assert page.json() == [{"ID": sub_id, "Name": "Off"}, {"ID": sub_id + 1, "Name": "extra 0"}]
    asked = await api.get(HOOKS, params={"pageSize": 1, "columns": "ID,Status,DateCreated"})
    assert asked.json() == [{"ID": sub_id, "Status": "Disabled", "DateCreated": doc["DateCreated"]}]

    assert (await api.delete(f"{HOOKS}{sub_id}")).status_code == 204
    assert (await api.get(f"{HOOKS}{sub_id}")).status_code == 404
    assert (await api.delete(f"{HOOKS}{sub_id}")).status_code == 404
    assert (await api.patch(f"{HOOKS}{sub_id}", json={})).status_code == 404
    assert (await api.get("/api/v1.0/companies/7/setup/webhooks/")).status_code == 404
    assert (await api.put(f"{HOOKS}{sub_id + 1}", json={})).status_code == 405
    assert sim.stats.total > 0  # counted as API traffic


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"CallbackURL": "ftp://receiver/hook"}, "CallbackURL"),
        ({"CallbackURL": "not a url"}, "CallbackURL"),
        ({"CallbackURL": 5}, "CallbackURL"),
        ({"Events": ["invoice.exploded"]}, "Events"),
        ({"Events": []}, "Events"),
        ({"Status": "On"}, "Status"),
        ({"Name": ""}, "Name"),
        ({"ID": 9}, "ID"),
        ({"Colour": "red"}, "Colour"),
    ],
)
async def test_invalid_subscription_is_422(
    receiver: Receiver,
    api_for: Callable[[Simulator], httpx.AsyncClient],
    fields: dict[str, object],
    path: str,
) -> None:
    api = api_for(in_process(receiver))
    response = await api.post(HOOKS, json=body(**fields))
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [e["path"] for e in errors] == [path]
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    # PATCH validates the same way; nothing was created.
    created = (await api.post(HOOKS, json=body())).json()
    patched = await api.patch(f"{HOOKS}{created['ID']}", json=fields)
    assert patched.status_code == 422
    assert (await api.get(HOOKS)).headers["Result-Total"] == "1"


async def test_missing_fields_and_bad_json_are_422(
    receiver: Receiver, api_for: Callable[[Simulator], httpx.AsyncClient]
) -> None:
    api = api_for(in_process(receiver))
    response = await api.post(HOOKS, json={})
    assert response.status_code == 422
    assert {e["path"] for e in response.json()["errors"]} == {"Name", "CallbackURL", "Events"}
    assert (await api.post(HOOKS, content=b"{nope")).status_code == 422
    assert (await api.post(HOOKS, json=[1])).status_code == 422


async def test_deliveries_are_signed_thin_references_in_order(receiver: Receiver) -> None:
    sim = in_process(receiver, webhook_url="http://receiver/hook", webhook_secret=SECRET)
    new_id = sim.dataset.add_invoice()
    sim.dataset.update_invoice(new_id, total_ex_tax=None, customer_id=None)
    sim.dataset.delete_invoice(new_id)
    # In-process nothing goes out until flushed: the mutations never wait for it.
    assert receiver.received == []
    assert sim.webhooks.pending() == 3
    await sim.webhooks.flush()

    assert [p["ID"] for p in receiver.payloads()] == [
        "invoice.created",
        "invoice.updated",
        "invoice.deleted",
    ]
    for (raw, headers), action in zip(
        receiver.received, ("created", "updated", "deleted"), strict=True
    ):
        payload = json.loads(raw)
        assert set(payload) == {
            "ID",
            "build",
            "name",
            "description",
            "action",
            "reference",
            "date_triggered",
        }
        assert payload["action"] == action
        assert payload["name"] == f"Invoice {action.capitalize()}"
        assert payload["description"] == f"An invoice was {action}."
        assert payload["date_triggered"].endswith("+00:00")
        assert payload["reference"] == {"companyID": 0, "invoiceID": new_id}
        assert isinstance(payload["build"], str)
        assert payload["build"]
        triggered = datetime.fromisoformat(payload["date_triggered"])
        assert triggered.tzinfo is not None
        assert abs(triggered.timestamp() - time.time()) < 60
        assert headers["content-type"] == "application/json"
        assert verify(raw, headers, SECRET)
        assert not verify(raw, headers, "other secret")
    assert [(e["event"], e["status"], e["attempts"], e["ok"]) for e in sim.webhook_log] == [
        ("invoice.created", 200, 1, True),
        ("invoice.updated", 200, 1, True),
        ("invoice.deleted", 200, 1, True),
    ]
    assert sim.webhooks.pending() == 0


async def test_disabled_and_unsubscribed_events_send_nothing(
    receiver: Receiver, api_for: Callable[[Simulator], httpx.AsyncClient]
) -> None:
    sim = in_process(receiver)
    api = api_for(sim)
    disabled = await api.post(HOOKS, json=body(Status="Disabled", Secret="a"))
    deletes_only = await api.post(HOOKS, json=body(Events=["invoice.deleted"], Secret="b"))
    assert disabled.status_code == deletes_only.status_code == 201

    new_id = sim.dataset.add_invoice()
    sim.dataset.update_invoice(new_id, customer_id=None)
    await sim.webhooks.flush()
    assert receiver.received == []
    assert sim.webhook_log == []

    sim.dataset.delete_invoice(new_id)
    await sim.webhooks.flush()
    assert [p["ID"] for p in receiver.payloads()] == ["invoice.deleted"]
    raw, headers = receiver.received[0]
    assert verify(raw, headers, "b")
    assert sim.webhook_log[0]["subscriptionID"] == deletes_only.json()["ID"]

    # Enabling the disabled one makes it receive the next change.
    await api.patch(f"{HOOKS}{disabled.json()['ID']}", json={"Status": "Enabled"})
    sim.dataset.add_invoice()
    await sim.webhooks.flush()
    assert [p["ID"] for p in receiver.payloads()] == ["invoice.deleted", "invoice.created"]
    assert verify(*receiver.received[1], "a")


async def test_500_twice_then_200_takes_three_attempts(receiver: Receiver) -> None:
    sim = in_process(receiver, webhook_url="http://receiver/hook")
    receiver.statuses = [500, 500]
    sim.dataset.add_invoice()
    started = time.monotonic()
    await sim.webhooks.flush()
    assert time.monotonic() - started >= 0.2 + 0.5  # the backoff before each retry
    assert len(receiver.received) == 3
    assert len({body for body, _ in receiver.received}) == 1  # the same delivery, resent
    (entry,) = sim.webhook_log
    assert (entry["attempts"], entry["status"], entry["ok"], entry["error"]) == (3, 200, True, None)


async def test_unreachable_receiver_is_logged_after_retries() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sim = Simulator(SimulatorConfig(**SMALL, webhook_url=url))
    sim.webhooks.backoff = (0.01, 0.01)
    sim.dataset.add_invoice()
    await sim.webhooks.flush()
    (entry,) = sim.webhook_log
    assert entry["attempts"] == 3
    assert (entry["status"], entry["ok"]) == (None, False)
    assert "Connect" in str(entry["error"])
    assert entry["url"] == url


async def test_duplicates_and_shuffle(receiver: Receiver) -> None:
    sim = in_process(receiver, webhook_url="http://receiver/hook")
    sim.webhooks.duplicate_rate = 1.0
    new_id = sim.dataset.add_invoice()
    await sim.webhooks.flush()
    assert [p["reference"]["invoiceID"] for p in receiver.payloads()] == [new_id, new_id]
    assert [e["duplicate"] for e in sim.webhook_log] == [False, True]

    receiver.received.clear()
    sim.webhooks.duplicate_rate = 0.0
    sim.webhooks.shuffle = True
    ids = [sim.dataset.add_invoice() for _ in range(6)]
    await sim.webhooks.flush()
    got = [p["reference"]["invoiceID"] for p in receiver.payloads()]
    assert sorted(got) == ids
    assert got != ids  # seeded: this batch comes out of order


def test_background_delivery_over_real_http(receiver: Receiver, served_receiver: str) -> None:
    config = SimulatorConfig(**SMALL, webhook_url=served_receiver, webhook_secret=SECRET)
    with running_simulator(config) as running:
        sim = running.simulator
        new_id = sim.dataset.add_invoice()  # from this thread, while uvicorn serves
        wait_for(lambda: len(sim.webhook_log) == 1)
        # A change made through the control API (on the server's thread) too.
        added = httpx.post(f"{running.url}/__invoices", json={"customerId": None}, timeout=5)
        assert added.status_code == 201
        wait_for(lambda: len(sim.webhook_log) == 2)
        sim.webhooks.flush_sync()

        payloads = receiver.payloads()
        assert [p["reference"]["invoiceID"] for p in payloads] == [new_id, added.json()["ID"]]
        assert all(verify(raw, headers, SECRET) for raw, headers in receiver.received)

        shown = httpx.get(f"{running.url}/__webhooks", timeout=5)  # no auth needed
        assert shown.status_code == 200
        doc = shown.json()
        assert doc["pending"] == 0
        assert [(d["event"], d["url"], d["status"], d["attempts"]) for d in doc["deliveries"]] == [
            ("invoice.created", served_receiver, 200, 1),
            ("invoice.created", served_receiver, 200, 1),
        ]
        assert doc["subscriptions"][0]["CallbackURL"] == served_receiver
        assert sim.stats.total == 0  # neither /__ path counts as API traffic
