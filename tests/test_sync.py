"""Incremental sync: what changed since the last sync, for a cost in proportion to it, and
exact on a build that ignores If-Modified-Since or ID filters (then it reads everything)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpro_counter.build_quirks import IF_MODIFIED_SINCE
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


# Changes a sync can see (a deletion cannot show up in a list of changes: webhooks and the
# full reconciliation cover those), and syncs between them.
SYNC_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(["new", "existing", "none"])),
        st.tuples(st.just("move"), st.integers(0, 10_000)),
        st.tuples(st.just("reprice"), st.integers(0, 10_000)),
        st.tuples(st.just("lose customer"), st.integers(0, 10_000)),
        st.tuples(st.just("sync"), st.just(0)),
    ),
    max_size=12,
)


@settings(
    max_examples=int(os.environ.get("SYNC_PROPERTY_EXAMPLES", "16")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    operations=SYNC_OPERATIONS,
    seed=st.integers(0, 1000),
    ignore_id_filters=st.booleans(),
    ignore_if_modified_since=st.booleans(),
)
def test_every_sync_is_exact_on_every_build(
    redis_url: str,
    operations: list[tuple[str, Any]],
    seed: int,
    ignore_id_filters: bool,
    ignore_if_modified_since: bool,
) -> None:
    simulator = Simulator(
        SimulatorConfig(
            invoices=120,
            customers=50,
            seed=seed,
            rate=0,
            ignore_id_filters=ignore_id_filters,
            ignore_if_modified_since=ignore_if_modified_since,
        )
    )
    asyncio.run(_sync_scenario(redis_url, simulator, [*operations, ("sync", 0)]))


async def _sync_scenario(
    redis_url: str, simulator: Simulator, operations: list[tuple[str, Any]]
) -> None:
    ignores_since = simulator.config.ignore_if_modified_since
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        await wait_for_count(client)
        dataset = simulator.dataset
        for action, argument in operations:
            ids = dataset.invoice_ids()
            if action == "add":
                new = dataset.uninvoiced_customer_ids()
                if argument == "new" and new:
                    dataset.add_invoice(customer_id=new[0])
                elif argument == "none":
                    dataset.add_invoice(without_customer=True)
                else:
                    dataset.add_invoice()
            elif action == "move":
                customers = dataset.customer_ids()
                dataset.update_invoice(
                    ids[argument % len(ids)], customer_id=customers[argument % len(customers)]
                )
            elif action == "reprice":
                cents = argument * 7919 % 1_000_000 - 50_000
                dataset.update_invoice(
                    ids[argument % len(ids)], total_ex_tax=Decimal(cents).scaleb(-2)
                )
            elif action == "lose customer":
                dataset.update_invoice(ids[argument % len(ids)], customer_id=None)
            else:
                synced = await client.post(INCREMENTAL, headers=AUTH)
                assert synced.status_code == 200, synced.text
                body = synced.json()
                truth = simulator.truth()
                assert body["count"] == truth.customers, operations
                invoices = (await client.get("/api/simpro/invoices")).json()
                assert invoices["count"] == truth.invoices, operations
                revenue = (await client.get("/api/simpro/revenue")).json()
                assert revenue["total"] == str(truth.revenue), operations
                # Said exactly when the build ignored it (the seeded invoices are all
                # older than any sync's cursor, so they prove it on such a build).
                said = body["lastSync"].get("buildIgnores", [])
                assert said == ([IF_MODIFIED_SINCE] if ignores_since else []), operations
