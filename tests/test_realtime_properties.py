"""Property: under any interleaving of changes, webhooks (duplicated, reordered, late),
incremental and full refreshes, on a build that searches on `ID` and honours
If-Modified-Since or one that ignores either or both, the published customers, invoices
and revenue and the growth history equal the truth once events are in."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpro_counter.keys import WEBHOOK_GROUP, Keys
from simpro_counter.settings import Settings
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.web.runtime import Runtime
from tests.service_fixtures import (
    ADMIN_TOKEN,
    WEBHOOK_SECRET,
    running_app,
    service_settings,
    wait_for_count,
)
from tests.transports import LateASGITransport

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(["new", "existing", "none"])),
        st.tuples(st.just("move"), st.integers(0, 10_000)),
        st.tuples(st.just("reprice"), st.integers(0, 10_000)),
        st.tuples(st.just("lose customer"), st.integers(0, 10_000)),
        st.tuples(st.just("delete"), st.integers(0, 10_000)),
        st.tuples(st.just("deliver"), st.sampled_from(["plain", "duplicated", "shuffled"])),
        st.tuples(st.just("incremental"), st.just(0)),
        st.tuples(st.just("full"), st.just(0)),
        st.tuples(st.just("check"), st.just(0)),
    ),
    max_size=14,
)


async def _drained(runtime: Runtime) -> None:
    """Until the webhook worker has applied every queued delivery."""
    stream = Keys(runtime.settings.key_prefix).webhook_events
    for _ in range(1000):
        if await runtime.redis_client.exists(stream):
            info: Any = await runtime.redis_client.xinfo_stream(stream)
            groups: Any = await runtime.redis_client.xinfo_groups(stream)
            group = next((g for g in groups if g["name"] == WEBHOOK_GROUP), None)
            if (
                group is not None
                and group["pending"] == 0
                and group["last-delivered-id"] == info["last-generated-id"]
            ):
                return
        else:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("webhook deliveries were not applied")


@settings(
    max_examples=int(os.environ.get("REALTIME_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    operations=OPERATIONS,
    seed=st.integers(0, 1000),
    ignore_id_filters=st.booleans(),
    ignore_if_modified_since=st.booleans(),
)
def test_the_count_follows_every_change(
    redis_url: str,
    operations: list[tuple[str, Any]],
    seed: int,
    ignore_id_filters: bool,
    ignore_if_modified_since: bool,
) -> None:
    # As tests.service_fixtures.webhook_simulator, on the build drawn.
    late = LateASGITransport()
    simulator = Simulator(
        SimulatorConfig(
            invoices=150,
            customers=60,
            seed=seed,
            rate=0,
            webhook_url="http://service/api/simpro/webhooks",
            webhook_secret=WEBHOOK_SECRET,
            ignore_id_filters=ignore_id_filters,
            ignore_if_modified_since=ignore_if_modified_since,
        ),
        webhook_transport=late,
    )
    settings_ = service_settings(redis_url, webhook_secret=WEBHOOK_SECRET)
    asyncio.run(_scenario(simulator, late, settings_, operations))


async def _scenario(
    simulator: Simulator,
    late: LateASGITransport,
    settings_: Settings,
    operations: list[tuple[str, Any]],
) -> None:
    async with running_app(settings_, simulator.transport()) as (app, client):
        late.app = app
        runtime: Runtime = app.state.runtime
        await wait_for_count(client)
        dataset = simulator.dataset

        async def settle() -> None:
            simulator.webhooks.duplicate_rate = 0.0
            simulator.webhooks.shuffle = False
            await simulator.webhooks.flush()
            await _drained(runtime)
            truth = simulator.truth()
            body = (await client.get("/api/simpro/customers")).json()
            assert body["count"] == truth.customers, operations
            invoices = (await client.get("/api/simpro/invoices")).json()
            assert invoices["count"] == truth.invoices, operations
            revenue = (await client.get("/api/simpro/revenue")).json()
            assert revenue["total"] == str(truth.revenue), operations
            history = (await client.get("/api/simpro/customers/history")).json()
            first_months = Counter(f"{day:%Y-%m}" for day in dataset.first_invoice_dates().values())
            assert {p["period"]: p["new"] for p in history["history"] if p["new"]} == dict(
                first_months
            ), operations
            assert history["total"] == truth.customers, operations

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
            elif action == "move" and ids:
                customers = dataset.customer_ids()
                dataset.update_invoice(
                    ids[argument % len(ids)], customer_id=customers[argument % len(customers)]
                )
            elif action == "reprice" and ids:
                cents = argument * 7919 % 1_000_000 - 50_000  # credit notes too
                dataset.update_invoice(
                    ids[argument % len(ids)], total_ex_tax=Decimal(cents).scaleb(-2)
                )
            elif action == "lose customer" and ids:
                dataset.update_invoice(ids[argument % len(ids)], customer_id=None)
            elif action == "delete" and ids:
                dataset.delete_invoice(ids[argument % len(ids)])
            elif action == "deliver":
                simulator.webhooks.duplicate_rate = 1.0 if argument == "duplicated" else 0.0
                simulator.webhooks.shuffle = argument == "shuffled"
                await simulator.webhooks.flush()
            elif action == "incremental":
                response = await client.post(
                    "/api/simpro/customers/refresh?mode=incremental", headers=AUTH
                )
                assert response.status_code == 200, response.text
            elif action == "full":
                response = await client.post("/api/simpro/customers/refresh", headers=AUTH)
                assert response.status_code == 200, response.text
            elif action == "check":
                await settle()
        await settle()
