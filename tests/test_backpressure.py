"""Bounded work under floods: the webhook backlog and the empty-value refresh trigger.

The webhook stream holds only deliveries accepted and not yet applied: an entry leaves it
when a worker acknowledges it, never by a length trim, and once WEBHOOK_BACKLOG_LIMIT
deliveries wait the endpoint answers 503 with Retry-After and queues nothing (the
simulated Simpro sends it again after that long). Real Redis, the simulator as Simpro.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simpro_counter.errors import WebhookBacklogFullError
from simpro_counter.keys import WEBHOOK_GROUP, Keys
from simpro_counter.metrics import refresh_groups
from simpro_counter.refresh import Failures, TriggerBackoff
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.store import connect
from simpro_counter.store.connection import RedisTarget, connect_target
from simpro_counter.webhooks.queue import QueuedDelivery, WebhookQueue, enqueue, enqueue_once
from simpro_counter.webhooks.receiver import Delivery
from simpro_counter.webhooks.signature import sign
from tests.service_fixtures import (
    WEBHOOK_SECRET,
    running_app,
    service_settings,
    wait_for_count,
    webhook_simulator,
)
from tests.topology_fixtures import Cluster, redis_cluster

__all__ = ["redis_cluster"]  # a module-scoped fixture used by name

FOREVER_MS = 3_600_000  # a claim idle time no test reaches
URL = "/api/simpro/webhooks"


def _delivery(record_id: int) -> Delivery:
    return Delivery(
        event="invoice.created",
        resource="invoice",
        action="created",
        record_id=record_id,
        company_id=0,
        triggered="2023-01-31T09:05:27+00:00",
    )


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_url, timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose()


async def _ids(client: Any, keys: Keys) -> list[str]:
    return [entry_id for entry_id, _ in await client.xrange(keys.webhook_events)]


# --- the queue ----------------------------------------------------------------------------


async def test_an_entry_leaves_the_stream_only_once_acknowledged(client: aioredis.Redis) -> None:
    keys = Keys(f"bp-{uuid.uuid4().hex[:8]}")
    queue = WebhookQueue(client, keys, "one", claim_idle_ms=FOREVER_MS)
    await queue.ensure_group()
    ids = [await enqueue(client, keys, _delivery(n), limit=4) for n in range(4)]
    with pytest.raises(WebhookBacklogFullError, match="4 accepted deliveries wait"):
        await enqueue(client, keys, _delivery(99), limit=4)
    assert await _ids(client, keys) == ids  # nothing appended, nothing dropped

    taken = await queue.take(2, block_ms=100)
    assert [q.entry_id for q in taken] == ids[:2]
    # Taken is not applied: pending entries, and those no one took, all stay.
    assert await queue.prune() == 0
    assert await _ids(client, keys) == ids
    with pytest.raises(WebhookBacklogFullError):
        await enqueue(client, keys, _delivery(99), limit=4)

    await queue.ack(ids[0])
    assert await _ids(client, keys) == ids[1:]  # exactly the applied one is gone
    await queue.ack(ids[0])  # again (another replica applied it too): harmless
    assert await _ids(client, keys) == ids[1:]
    fifth = await enqueue(client, keys, _delivery(5), limit=4)  # room for one again
    assert await _ids(client, keys) == [*ids[1:], fifth]
    pending = await client.xpending(keys.webhook_events, WEBHOOK_GROUP)
    assert pending["pending"] == 1  # ids[1], still waiting to be applied


async def test_prune_removes_what_an_earlier_version_acknowledged_and_nothing_else(
    client: aioredis.Redis,
) -> None:
    keys = Keys(f"bp-{uuid.uuid4().hex[:8]}")
    queue = WebhookQueue(client, keys, "one", claim_idle_ms=FOREVER_MS)
    assert await queue.prune() == 0  # no stream yet
    await queue.ensure_group()
    ids = [await enqueue(client, keys, _delivery(n)) for n in range(6)]
    assert await queue.prune() == 0  # nothing taken yet
    taken = await queue.take(4, block_ms=100)
    # An earlier version acknowledged without deleting: entries 0, 1 and 3 applied.
    await client.xack(keys.webhook_events, WEBHOOK_GROUP, ids[0], ids[1], ids[3])
    assert await queue.prune() == 2  # 0 and 1: before the oldest pending one (2)
    assert await _ids(client, keys) == ids[2:]
    await client.xack(keys.webhook_events, WEBHOOK_GROUP, ids[2])
    assert await queue.prune() == 2  # 2 and 3: all taken, none pending
    assert await _ids(client, keys) == ids[4:]  # never taken: kept
    assert len(taken) == 4
    assert [q.entry_id for q in await queue.take(10, block_ms=100)] == ids[4:]


async def test_a_full_backlog_marks_nothing_and_a_replay_is_still_a_replay(
    client: aioredis.Redis,
) -> None:
    keys = Keys(f"bp-{uuid.uuid4().hex[:8]}")
    queue = WebhookQueue(client, keys, "one", claim_idle_ms=FOREVER_MS)
    await queue.ensure_group()
    first = await enqueue_once(
        client, keys, _delivery(1), identity="a", settled=True, seconds=60, limit=1
    )
    assert first is not None
    with pytest.raises(WebhookBacklogFullError):
        await enqueue_once(
            client, keys, _delivery(2), identity="b", settled=True, seconds=60, limit=1
        )
    assert await client.exists(keys.webhook_seen("b")) == 0  # refused: not marked
    # A copy of one queued already is a replay, full or not.
    assert (
        await enqueue_once(
            client, keys, _delivery(1), identity="a", settled=True, seconds=60, limit=1
        )
        is None
    )
    [taken] = await queue.take(10, block_ms=100)
    await queue.ack(taken.entry_id)
    second = await enqueue_once(
        client, keys, _delivery(2), identity="b", settled=True, seconds=60, limit=1
    )
    assert second is not None
    assert await queue.take(10, block_ms=100) == [QueuedDelivery(second, _delivery(2))]


async def test_the_backlog_scripts_run_in_a_cluster(redis_cluster: Cluster) -> None:
    keys = Keys.of(f"bp-{uuid.uuid4().hex[:8]}", cluster=True)
    client = connect_target(RedisTarget(url=redis_cluster.url, cluster=True), timeout=5.0)
    try:
        queue = WebhookQueue(client, keys, "one", claim_idle_ms=FOREVER_MS)
        await queue.ensure_group()
        ids = [
            await enqueue_once(
                client, keys, _delivery(n), identity=str(n), settled=True, seconds=60, limit=2
            )
            for n in range(2)
        ]
        assert None not in ids
        with pytest.raises(WebhookBacklogFullError):
            await enqueue(client, keys, _delivery(3), limit=2)
        taken = await queue.take(10, block_ms=100)
        assert [q.entry_id for q in taken] == ids
        # Acknowledged as an earlier version did: not deleted.
        await client.xack(keys.webhook_events, WEBHOOK_GROUP, taken[0].entry_id)
        assert await queue.prune() == 1
        await queue.ack(taken[1].entry_id)
        assert await client.xlen(keys.webhook_events) == 0
        assert await enqueue(client, keys, _delivery(3), limit=2)
    finally:
        await client.aclose()


# --- the endpoint -------------------------------------------------------------------------


def _signed(invoice_id: int) -> tuple[bytes, dict[str, str]]:
    triggered = datetime.now(UTC).replace(microsecond=0).isoformat()
    body = json.dumps({
        "ID": "invoice.created", "build": "23.1.0", "action": "created",
        "reference": {"companyID": 0, "invoiceID": invoice_id}, "date_triggered": triggered,
    }).encode()  # fmt: skip
    return body, {"X-Response-Signature": sign(body, WEBHOOK_SECRET, "sha1")}


async def test_a_full_backlog_answers_503_with_retry_after_until_the_worker_drains_it(
    redis_url: str,
) -> None:
    simulator, _, settings = webhook_simulator(
        redis_url, invoices=30, customers=10, seed=71, webhook_backlog_limit=3
    )
    async with running_app(settings, simulator.transport()) as (app, client):
        worker = app.state.runtime.webhooks
        await worker.aclose()  # nothing is applied for now: the backlog fills
        stream = app.state.runtime.store.keys.webhook_events
        redis = app.state.runtime.redis_client
        # Deliveries in parallel: the limit holds however they interleave.
        answers = await asyncio.gather(
            *(client.post(URL, content=b, headers=h) for b, h in map(_signed, range(1, 13)))
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] * 3 + [503] * 9
        assert await redis.xlen(stream) == 3
        refused = next(answer for answer in answers if answer.status_code == 503)
        assert refused.headers["Retry-After"] == "10"
        assert refused.json()["accepted"] is False
        assert refused.json()["error"].startswith("The webhook backlog is full: 3 accepted")
        assert "retry after 10 s" in refused.json()["error"]
        queued_ids = {a.json()["id"] for a in answers if a.status_code == 200}

        worker.start()  # applies (and so deletes) what waits
        for _ in range(500):
            if await redis.xlen(stream) == 0:
                break
            await asyncio.sleep(0.01)
        assert await redis.xlen(stream) == 0
        again = next(n for n in range(1, 13) if n not in queued_ids)
        body, headers = _signed(again)
        answer = await client.post(URL, content=body, headers=headers)
        assert answer.status_code == 200
        assert answer.json()["queued"] is True  # not taken for a replay: never marked


class _Statuses(httpx.AsyncBaseTransport):
    """The statuses the service answered the simulator's deliveries with."""

    def __init__(self) -> None:
        self.app: Any = None
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await httpx.ASGITransport(app=self.app).handle_async_request(request)
        self.statuses.append(response.status_code)
        return response


async def test_every_delivery_is_applied_end_to_end_through_a_full_backlog(
    redis_url: str,
) -> None:
    recorder = _Statuses()
    simulator = Simulator(
        SimulatorConfig(
            invoices=200, customers=100, seed=72, rate=0,
            webhook_url="http://service/api/simpro/webhooks", webhook_secret=WEBHOOK_SECRET,
        ),
        webhook_transport=recorder,
    )  # fmt: skip
    _, _, settings = webhook_simulator(
        redis_url, invoices=1, customers=1, seed=1, webhook_backlog_limit=2
    )
    simulator.webhooks.retry_after_cap = 0.1  # the service asks for 10 s
    simulator.webhooks.retry_after_attempts = 200
    async with running_app(settings, simulator.transport()) as (app, client):
        recorder.app = app
        before = await wait_for_count(client)
        worker = app.state.runtime.webhooks
        await worker.aclose()
        stream = app.state.runtime.store.keys.webhook_events
        redis = app.state.runtime.redis_client
        newcomers = simulator.dataset.uninvoiced_customer_ids()[:8]
        for customer in newcomers:
            simulator.dataset.add_invoice(customer_id=customer)
        flushing = asyncio.create_task(simulator.webhooks.flush())
        for _ in range(500):  # until a delivery was refused
            if 503 in recorder.statuses:
                break
            await asyncio.sleep(0.01)
        assert 503 in recorder.statuses
        assert await redis.xlen(stream) == 2
        worker.start()
        await asyncio.wait_for(flushing, 30)
        for _ in range(500):
            body = (await client.get("/api/simpro/customers")).json()
            if body["count"] == before["count"] + len(newcomers):
                break
            await asyncio.sleep(0.02)
        assert body["count"] == before["count"] + len(newcomers) == simulator.truth().customers
    log = simulator.webhook_log
    assert len(log) == len(newcomers)
    assert all(entry["ok"] for entry in log), log
    assert sum(int(str(entry["heldBack"])) for entry in log) >= 1


# --- the simulator's dispatcher -------------------------------------------------------------


class _Refusing:
    """A receiver answering 503 with `Retry-After` `refusals` times, then 200."""

    def __init__(self, refusals: int, retry_after: str) -> None:
        self.refusals = refusals
        self.retry_after = retry_after
        self.calls = 0
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        await request.body()
        self.calls += 1
        if self.calls <= self.refusals:
            return Response(status_code=503, headers={"Retry-After": self.retry_after})
        return Response(status_code=200)


def _dispatching(receiver: _Refusing) -> Simulator:
    sim = Simulator(
        SimulatorConfig(
            invoices=20, customers=5, seed=3, rate=0.0, webhook_url="http://receiver/hook"
        ),
        webhook_transport=httpx.ASGITransport(app=receiver.app),
    )
    sim.webhooks.backoff = (0.01,)
    return sim


async def test_the_simulator_waits_out_retry_after_beyond_its_backoff() -> None:
    receiver = _Refusing(refusals=6, retry_after="0.05")
    sim = _dispatching(receiver)
    sim.dataset.add_invoice()
    started = time.monotonic()
    await sim.webhooks.flush()
    assert time.monotonic() - started >= 6 * 0.05
    (entry,) = sim.webhook_log
    assert (entry["ok"], entry["status"], entry["attempts"], entry["heldBack"]) == (
        True,
        200,
        7,
        6,
    )


async def test_the_simulator_caps_retry_after_and_gives_up_in_bounded_attempts() -> None:
    receiver = _Refusing(refusals=1000, retry_after="3600")
    sim = _dispatching(receiver)
    sim.webhooks.retry_after_cap = 0.01
    sim.webhooks.retry_after_attempts = 3
    sim.dataset.add_invoice()
    await asyncio.wait_for(sim.webhooks.flush(), 10)
    (entry,) = sim.webhook_log
    # 1 attempt, 3 held back by Retry-After, then the backoff's 1 retry.
    assert (entry["ok"], entry["status"], entry["attempts"], entry["heldBack"]) == (
        False,
        503,
        5,
        3,
    )
    assert receiver.calls == 5


# --- the empty-value refresh trigger --------------------------------------------------------


def test_the_trigger_backoff_doubles_up_to_its_cap_and_a_success_resets_it() -> None:
    now = [100.0]
    backoff = TriggerBackoff(base=2.0, cap=10.0, clock=lambda: now[0])
    assert backoff.due("customers")
    waits = [backoff.failed("customers").wait for _ in range(5)]
    assert waits == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert not backoff.due("customers")
    assert backoff.due("jobs")  # per group
    now[0] += 9.9
    assert not backoff.due("customers")
    now[0] += 0.1
    assert backoff.due("customers")
    backoff.succeeded("customers")
    assert backoff.failures("customers") is None
    assert backoff.failed("customers") == Failures(count=1, wait=2.0, retry_at=112.0)
    for _ in range(2000):  # no overflow however long Simpro refuses
        backoff.failed("customers")
    assert backoff.failures("customers") == Failures(2001, 10.0, 120.0)
    with pytest.raises(ValueError, match="base <= cap"):
        TriggerBackoff(base=5.0, cap=1.0)


async def _settled(runtime: Any) -> None:
    """Until no refresh runs in this process."""
    for _ in range(500):
        if not any(runtime.refresher.running_here(group) for group in refresh_groups()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a refresh never finished")


async def test_reads_of_a_missing_value_with_a_wrong_key_cost_a_bounded_number_of_requests(
    redis_url: str,
) -> None:
    simulator = Simulator(SimulatorConfig(invoices=60, customers=20, seed=73, rate=0))
    settings = service_settings(redis_url, simpro_api_key="wrong-key")
    invoices = "/api/v1.0/companies/0/invoices/"
    async with running_app(settings, simulator.transport()) as (app, client):
        runtime = app.state.runtime
        backoff = TriggerBackoff(base=0.25, cap=0.5)
        runtime.refresher.trigger_backoff = backoff
        for _ in range(500):  # the scheduler's first check: every group failed once
            if all(backoff.failures(group) for group in refresh_groups()):
                break
            await asyncio.sleep(0.01)
        await _settled(runtime)
        per_refresh = simulator.stats.by_path[invoices]  # what one failed refresh costs
        assert per_refresh >= 1
        simulator.stats.reset()
        started = time.monotonic()
        for _ in range(100):
            answer = await client.get("/api/simpro/customers")
            assert answer.status_code == 200
            assert answer.json()["count"] is None
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        await _settled(runtime)
        refused = simulator.stats.total
        assert simulator.stats.by_status[401] == refused  # every request was refused
        assert simulator.stats.by_path[invoices] == refused
        # At most one start per backoff wait (0.25 s, then 0.5 s), however many reads.
        refreshes = refused / per_refresh
        assert 1 <= refreshes <= 2 + elapsed / 0.5, (refused, per_refresh, elapsed)

        # The key is right now: after the backoff a read starts a refresh that works.
        simulator.auth.credentials = replace(simulator.auth.credentials, api_key="wrong-key")
        body: dict[str, Any] = {}
        for _ in range(300):
            body = (await client.get("/api/simpro/customers")).json()
            if body["count"] is not None:
                break
            await asyncio.sleep(0.02)
        assert body["count"] == simulator.truth().customers
        await _settled(runtime)  # published before the refresh finished recording
        assert backoff.failures("customers") is None
