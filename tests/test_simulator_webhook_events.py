"""The webhook events the simulator sends, as SIMPRO.md describes Simpro's.

A change of an invoice's Stage sends `invoice.stage.approved` or `.pending`; whether
`invoice.updated` goes with it is unverified, so `stage_change_sends_updated` chooses.
Payloads carry `name`, `description` and `date_triggered` in UTC with `+00:00`;
`webhook_reference_id="InternalID"` makes the reference name the other invoice number.
Deliveries go to a real receiver, over real HTTP where the test says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from simpro_counter.simulator import Simulator, SimulatorConfig, running_simulator
from simpro_counter.simulator.records import internal_id
from simpro_counter.webhooks.events import STAGE_EVENTS
from tests.webhook_receivers import Receiver, serve_receiver, verify, wait_for

AUTH = {"Authorization": "Bearer demo-key"}
HOOKS = "/api/v1.0/companies/0/setup/webhooks/"
INVOICES = "/api/v1.0/companies/0/invoices/"
SECRET = "s3cret"
EVERY_INVOICE_EVENT = [
    "invoice.created",
    "invoice.updated",
    "invoice.deleted",
    "invoice.status",
    *STAGE_EVENTS,
]


def in_process(receiver: Receiver, **config: Any) -> Simulator:
    """A simulator whose one subscription gets every invoice event, stage events included."""
    values: dict[str, Any] = {"invoices": 40, "customers": 8, "seed": 3, "rate": 0.0}
    sim = Simulator(
        SimulatorConfig(**{**values, **config}),
        webhook_transport=httpx.ASGITransport(app=receiver.app),
    )
    sim.webhooks.subscribe(
        0,
        name="Counter",
        callback_url="http://receiver/hook",
        secret=SECRET,
        events=tuple(EVERY_INVOICE_EVENT),
    )
    return sim


def stage_of(sim: Simulator, invoice_id: int) -> str:
    return sim.dataset.invoice(invoice_id).stage


def other_stage(stage: str) -> str:
    return "Pending" if stage == "Approved" else "Approved"


async def test_a_stage_change_sends_its_stage_event_only(receiver: Receiver) -> None:
    sim = in_process(receiver)
    invoice_id = sim.dataset.invoice_ids()[0]
    target = other_stage(stage_of(sim, invoice_id))
    sim.dataset.update_invoice(invoice_id, stage=target)
    sim.dataset.update_invoice(invoice_id, stage=other_stage(target))
    await sim.webhooks.flush()

    expected = [f"invoice.stage.{target.lower()}", f"invoice.stage.{other_stage(target).lower()}"]
    assert receiver.events() == expected
    first = receiver.payloads()[0]
    word = target.lower()
    assert first == {
        "ID": f"invoice.stage.{word}",
        "build": sim.webhooks.build,
        "name": f"Invoice Stage {target}",
        "description": f"An invoice's stage changed to {word}.",
        "action": f"stage.{word}",
        "reference": {"companyID": 0, "invoiceID": invoice_id},
        "date_triggered": first["date_triggered"],
    }
    assert all(verify(raw, headers, SECRET) for raw, headers in receiver.received)


async def test_stage_change_sends_updated_mode_adds_invoice_updated(receiver: Receiver) -> None:
    sim = in_process(receiver, stage_change_sends_updated=True)
    invoice_id = sim.dataset.invoice_ids()[1]
    target = other_stage(stage_of(sim, invoice_id))
    sim.dataset.update_invoice(invoice_id, stage=target)
    await sim.webhooks.flush()
    assert receiver.events() == ["invoice.updated", f"invoice.stage.{target.lower()}"]


async def test_a_stage_change_with_other_changes_sends_both_in_either_mode(
    receiver: Receiver,
) -> None:
    sim = in_process(receiver)  # stage_change_sends_updated=False
    invoice_id = sim.dataset.invoice_ids()[2]
    target = other_stage(stage_of(sim, invoice_id))
    sim.dataset.update_invoice(invoice_id, stage=target, total_ex_tax=Decimal("12.34"))
    # Saving the Stage it already has is an ordinary update.
    sim.dataset.update_invoice(invoice_id, stage=target)
    await sim.webhooks.flush()
    assert receiver.events() == [
        "invoice.updated",
        f"invoice.stage.{target.lower()}",
        "invoice.updated",
    ]


async def test_payloads_name_the_event_and_trigger_time_in_utc(receiver: Receiver) -> None:
    sim = in_process(receiver)
    new_id = sim.dataset.add_invoice()
    modified = sim.dataset.invoice(new_id).date_modified
    sim.dataset.delete_invoice(new_id)
    await sim.webhooks.flush()
    created, deleted = receiver.payloads()
    assert (created["name"], created["description"]) == (
        "Invoice Created",
        "An invoice was created.",
    )
    assert (deleted["name"], deleted["description"]) == (
        "Invoice Deleted",
        "An invoice was deleted.",
    )
    for payload in (created, deleted):
        text = payload["date_triggered"]
        assert text.endswith("+00:00")
        assert not text.endswith("Z")
        assert datetime.fromisoformat(text).utcoffset() == timedelta(0)
    # date_triggered is the instant of the change: the record's DateModified, in UTC.
    assert datetime.fromisoformat(created["date_triggered"]).timestamp() == modified


async def test_reference_can_name_the_internal_id(receiver: Receiver) -> None:
    sim = in_process(receiver, webhook_reference_id="InternalID")
    invoice_id = sim.dataset.invoice_ids()[3]
    sim.dataset.update_invoice(invoice_id, total_ex_tax=Decimal("5.00"))
    await sim.webhooks.flush()
    (payload,) = receiver.payloads()
    assert payload["reference"] == {"companyID": 0, "invoiceID": internal_id(invoice_id)}
    # That number is not what invoices/{id} takes: a client fetching it gets a 404 for a
    # record that exists, which is no proof of deletion.
    async with httpx.AsyncClient(
        transport=sim.transport(), base_url="http://sim", headers=AUTH
    ) as api:
        assert (await api.get(f"{INVOICES}{internal_id(invoice_id)}")).status_code == 404
        assert (await api.get(f"{INVOICES}{invoice_id}")).status_code == 200


def test_bad_strictness_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown_query_fields"):
        SimulatorConfig(unknown_query_fields="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="webhook_reference_id"):
        SimulatorConfig(webhook_reference_id="Number")  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def served_receiver(receiver: Receiver) -> Iterator[str]:
    with serve_receiver(receiver) as url:
        yield url


def test_stage_events_over_real_http(receiver: Receiver, served_receiver: str) -> None:
    """Subscribe through the setup API, change a Stage through the control API, over HTTP."""
    config = SimulatorConfig(invoices=60, customers=10, seed=4, rate=0)
    with (
        running_simulator(config) as running,
        httpx.Client(base_url=running.url, headers=AUTH, timeout=5) as http,
    ):
        sim = running.simulator
        created = http.post(
            HOOKS,
            json={
                "Name": "Stages",
                "CallbackURL": served_receiver,
                "Secret": SECRET,
                "Email": "ops@example.com",
                "Events": list(STAGE_EVENTS),
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["Events"] == list(STAGE_EVENTS)

        invoice_id = sim.dataset.invoice_ids()[0]
        before = http.get(f"{INVOICES}{invoice_id}").json()
        target = other_stage(before["Stage"])
        changed = http.patch(f"/__invoices/{invoice_id}", json={"stage": target})
        assert changed.status_code == 200, changed.text
        assert http.patch(f"/__invoices/{invoice_id}", json={"stage": "Lost"}).status_code == 422
        # A total change alone is an invoice.updated, which this subscription did not ask for.
        assert http.patch(f"/__invoices/{invoice_id}", json={"totalExTax": "7.00"}).is_success

        wait_for(lambda: len(sim.webhook_log) == 1)
        sim.webhooks.flush_sync()
        assert receiver.events() == [f"invoice.stage.{target.lower()}"]
        raw, headers = receiver.received[0]
        assert verify(raw, headers, SECRET)
        assert json.loads(raw)["reference"] == {"companyID": 0, "invoiceID": invoice_id}

        after = http.get(f"{INVOICES}{invoice_id}").json()
        assert after["Stage"] == target
        assert after["DateModified"] >= before["DateModified"]
        if target == "Pending":
            assert after["Status"]["Name"] == "Pending Approval"
        # An event the build does not know is still refused.
        unknown = http.post(
            HOOKS,
            json={"Name": "x", "CallbackURL": served_receiver, "Events": ["invoice.stage.lost"]},
        )
        assert unknown.status_code == 422
