"""Incremental sync: what changed since the last sync, for a cost in proportion to it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from simpro_counter.simulator import Simulator, SimulatorConfig
from tests.service_fixtures import ADMIN_TOKEN, running_app, service_settings, wait_for_count

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INCREMENTAL = "/api/simpro/customers/refresh?mode=incremental"


@pytest.mark.parametrize("nothing_changed", [304, 200])
async def test_incremental_costs_what_changed(redis_url: str, nothing_changed: int) -> None:
    simulator = Simulator(
        SimulatorConfig(
            invoices=1500, customers=300, seed=41, rate=0, not_modified_status=nothing_changed
        )
    )
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        before = await wait_for_count(client)
        simulator.stats.reset()

        unchanged = await client.post(INCREMENTAL, headers=AUTH)
        assert unchanged.status_code == 200, unchanged.text
        assert unchanged.json()["count"] == before["count"]
        assert unchanged.json()["lastSync"]["changed"] == 0
        assert simulator.stats.total == 1  # nothing changed: one request
        # The answer reports what the sync cost, not the earlier full scan's figures.
        assert unchanged.json()["requests"] == 1
        assert unchanged.json()["pages"] is None
        assert unchanged.json()["duration"] == unchanged.json()["lastSync"]["duration"]

        first, second = simulator.dataset.uninvoiced_customer_ids()[:2]
        new_invoice = simulator.dataset.add_invoice(customer_id=first)
        moved = simulator.dataset.invoice_ids()[0]
        simulator.dataset.update_invoice(moved, customer_id=second)
        simulator.stats.reset()
        synced: dict[str, Any] = (await client.post(INCREMENTAL, headers=AUTH)).json()
        assert synced["count"] == simulator.truth().customers
        assert synced["lastSync"]["changed"] >= 2
        assert simulator.stats.total == 1  # one page of changes
        assert new_invoice in simulator.dataset.invoice_ids()

        # Deletions do not show up in a list of changes; the full refresh reconciles them,
        # and says by how much the kept-current count had drifted.
        simulator.dataset.delete_invoice(new_invoice)
        missed = (await client.post(INCREMENTAL, headers=AUTH)).json()
        assert missed["count"] == simulator.truth().customers + 1
        full = (await client.post("/api/simpro/customers/refresh", headers=AUTH)).json()
        assert full["count"] == simulator.truth().customers
        status = (await client.get("/api/simpro/customers/refresh")).json()
        assert status["lastRefresh"]["drift"] == -1


async def test_incremental_without_a_cursor_is_a_full_refresh(redis_url: str) -> None:
    simulator = Simulator(SimulatorConfig(invoices=600, customers=100, seed=42, rate=0))
    settings = service_settings(redis_url)
    async with running_app(settings, simulator.transport()) as (app, client):
        await wait_for_count(client)
        # A value without a sync cursor, as the Next.js version or a memory-only run left it.
        runtime = app.state.runtime
        value = await runtime.store.read("customers")
        assert await runtime.store.publish(replace(value.with_details({}), fence=value.fence + 1))
        simulator.stats.reset()
        response = await client.post(INCREMENTAL, headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["count"] == simulator.truth().customers
        assert simulator.stats.total > 1  # it scanned
