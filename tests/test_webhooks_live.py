"""Simpro's webhooks move the published count: simulator → webhook → fetch → ledger → API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from simpro_counter.simulator import Simulator, SimulatorConfig
from tests.service_fixtures import (
    WEBHOOK_SECRET,
    running_app,
    service_settings,
    wait_for_count,
    webhook_simulator,
)


async def _count_becomes(client: httpx.AsyncClient, expected: int) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (await client.get("/api/simpro/customers")).json()
        if body["count"] == expected:
            return body
        await asyncio.sleep(0.025)
    raise AssertionError(f"count {body['count']} never became {expected}")


async def test_created_moved_and_deleted_invoices_move_the_count(redis_url: str) -> None:
    simulator, late, settings = webhook_simulator(redis_url, invoices=500, customers=200, seed=31)
    async with running_app(settings, simulator.transport()) as (app, client):
        late.app = app
        before = await wait_for_count(client)
        assert before["count"] == simulator.truth().customers
        simulator.stats.reset()
        first, second = simulator.dataset.uninvoiced_customer_ids()[:2]

        invoice = simulator.dataset.add_invoice(customer_id=first)  # a new customer
        await simulator.webhooks.flush()
        await _count_becomes(client, before["count"] + 1)

        simulator.dataset.update_invoice(invoice, customer_id=second)  # moved: still +1
        simulator.webhooks.duplicate_rate = 1.0  # every delivery twice: harmless
        await simulator.webhooks.flush()
        await asyncio.sleep(0.3)
        assert (await client.get("/api/simpro/customers")).json()["count"] == before["count"] + 1

        simulator.dataset.delete_invoice(invoice)
        await simulator.webhooks.flush()
        after = await _count_becomes(client, before["count"])
        assert after["count"] == simulator.truth().customers

    # Each delivery cost one record fetch, never a scan.
    assert simulator.stats.total <= 6
    assert all(entry["ok"] for entry in simulator.webhook_log)


async def test_an_event_applied_by_one_replica_is_seen_by_the_other_within_100_ms(
    redis_url: str,
) -> None:
    simulator, late, settings = webhook_simulator(redis_url, invoices=300, customers=150, seed=32)
    async with (
        running_app(settings, simulator.transport()) as (app_a, client_a),
        running_app(settings, simulator.transport()) as (_, client_b),
    ):
        late.app = app_a  # deliveries reach replica A; either replica's worker applies them
        before = await wait_for_count(client_a)
        await wait_for_count(client_b)
        for customer in simulator.dataset.uninvoiced_customer_ids()[:5]:
            simulator.dataset.add_invoice(customer_id=customer)
            await simulator.webhooks.flush()
            expected = simulator.truth().customers
            seen: dict[str, float] = {}
            loop = asyncio.get_running_loop()
            for _ in range(400):
                for name, client in (("a", client_a), ("b", client_b)):
                    if name not in seen:
                        body = (await client.get("/api/simpro/customers")).json()
                        if body["count"] == expected:
                            seen[name] = loop.time()
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.005)
            assert len(seen) == 2, seen
            assert abs(seen["a"] - seen["b"]) < 0.1
        assert expected == before["count"] + 5


async def test_a_delivery_taken_by_a_stopped_replica_is_applied_by_another(
    redis_url: str,
) -> None:
    simulator = Simulator(SimulatorConfig(invoices=300, customers=150, seed=33, rate=0))
    settings = service_settings(redis_url, webhook_secret=WEBHOOK_SECRET, webhook_claim_idle=0.3)
    stream = f"{settings.key_prefix}:webhook_events"
    async with running_app(settings, simulator.transport()) as (app, client):
        before = await wait_for_count(client)
        redis = app.state.runtime.redis_client
        for _ in range(100):  # the worker has created its consumer group
            if await redis.exists(stream):
                break
            await asyncio.sleep(0.01)
    # Every replica is stopped. One had taken a delivery and died before applying it.
    invoice = simulator.dataset.add_invoice(
        customer_id=simulator.dataset.uninvoiced_customer_ids()[0]
    )
    async with running_app(settings, simulator.transport()) as (app, client):
        redis = app.state.runtime.redis_client
        await app.state.runtime.webhooks.aclose()  # hold this replica's worker back ...
        fields = {"event": "invoice.created", "resource": "invoice", "action": "created",
                  "id": str(invoice), "company": "0", "triggered": ""}  # fmt: skip
        await redis.xadd(stream, fields)
        taken = await redis.xreadgroup("webhook-workers", "stopped-replica", {stream: ">"})
        assert taken  # ... while a replica that is about to stop takes the delivery
        app.state.runtime.webhooks.start()  # this replica goes on; the other never comes back
        after = await _count_becomes(client, before["count"] + 1)
    assert after["count"] == simulator.truth().customers


@pytest.mark.parametrize("sends_updated", [False, True], ids=["stage-event-only", "with-updated"])
async def test_stage_changes_the_build_sends_move_invoices_in_and_out_of_invoice_stages(
    redis_url: str, sends_updated: bool
) -> None:
    """The simulator's own stage events (with or without an `invoice.updated` beside them:
    unverified which Simpro sends) keep `INVOICE_STAGES=Approved` counts exact."""
    simulator, late, settings = webhook_simulator(
        redis_url,
        invoices=400,
        customers=150,
        seed=33,
        build={"stage_change_sends_updated": sends_updated},
        invoice_stages="Approved",
    )
    dataset = simulator.dataset

    def approved() -> int:
        return sum(dataset.invoice(i).stage == "Approved" for i in dataset.invoice_ids())

    async def invoices_become(expected: int) -> None:
        for _ in range(200):
            body = (await client.get("/api/simpro/invoices")).json()
            if body["count"] == expected:
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"invoices {body['count']} never became {expected}")

    async with running_app(settings, simulator.transport()) as (app, client):
        late.app = app
        await wait_for_count(client)
        await invoices_become(approved())
        moved = [i for i in dataset.invoice_ids() if dataset.invoice(i).stage == "Approved"][:3]
        for invoice in moved:
            dataset.update_invoice(invoice, stage="Pending")
        await simulator.webhooks.flush()
        await invoices_become(approved())
        dataset.update_invoice(moved[0], stage="Approved")
        await simulator.webhooks.flush()
        await invoices_become(approved())

    events = [entry["event"] for entry in simulator.webhook_log]
    assert events.count("invoice.stage.pending") == 3
    assert events.count("invoice.stage.approved") == 1
    assert ("invoice.updated" in events) is sends_updated
    assert all(entry["ok"] for entry in simulator.webhook_log)
