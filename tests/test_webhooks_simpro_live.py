"""Webhooks as Simpro sends them, end to end: simulator → webhook → worker → API.

Deliveries are signed and POSTed to the service over HTTP as Simpro would send them;
the worker fetches from the simulator. Where Simpro's behaviour is unverified (a record
whose detail path answers 404 while it exists, a build that ignores ID filters), a
transport around the simulator's answers that way, so both behaviours are exercised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from simpro_counter.keys import WEBHOOK_GROUP, Keys
from simpro_counter.simulator import Simulator
from simpro_counter.web.runtime import Runtime
from simpro_counter.webhooks.signature import sign
from tests.service_fixtures import (
    WEBHOOK_SECRET,
    running_app,
    service_settings,
    wait_for_count,
    webhook_simulator,
)

URL = "/api/simpro/webhooks"


def _triggered(seconds_ago: float = 0.0) -> str:
    return datetime.fromtimestamp(int(time.time() - seconds_ago), UTC).isoformat()


async def _deliver(
    client: httpx.AsyncClient,
    event: str,
    invoice_id: int,
    *,
    seconds_ago: float = 0.0,
    triggered: str | None = None,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """POST a signed delivery shaped as Simpro's (with `name` and `description`);
    `triggered` fixes its `date_triggered` (else `seconds_ago` before now)."""
    payload = {
        "ID": event,
        "build": "simulator.simprosuite.com",
        "action": event.rpartition(".")[2],
        "name": "simpro-counter",
        "description": "Keeps simpro-counter's counters current",
        "reference": reference or {"companyID": 0, "invoiceID": invoice_id},
        "date_triggered": triggered or _triggered(seconds_ago),
    }
    body = json.dumps(payload).encode()
    answer = await client.post(
        URL,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Response-Signature": sign(body, WEBHOOK_SECRET, "sha1"),
        },
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def _drained(app: FastAPI) -> None:
    """Until the worker has taken and acknowledged every queued delivery."""
    runtime: Runtime = app.state.runtime
    redis = runtime.redis_client
    stream = Keys(runtime.settings.key_prefix).webhook_events
    for _ in range(1000):
        if not await redis.exists(stream):
            return
        info: Any = await redis.xinfo_stream(stream)
        groups: Any = await redis.xinfo_groups(stream)
        group = next((g for g in groups if g["name"] == WEBHOOK_GROUP), None)
        if (
            group is not None
            and group["pending"] == 0
            and group["last-delivered-id"] == info["last-generated-id"]
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("webhook deliveries were not applied")


async def _counts(client: httpx.AsyncClient) -> tuple[int, int, str]:
    customers = (await client.get("/api/simpro/customers")).json()["count"]
    invoices = (await client.get("/api/simpro/invoices")).json()["count"]
    revenue = (await client.get("/api/simpro/revenue")).json()["total"]
    return customers, invoices, revenue


def _applied(app: FastAPI) -> int:
    runtime: Runtime = app.state.runtime
    assert runtime.webhooks is not None
    return runtime.webhooks.applied


def _set_stage(simulator: Simulator, invoice_id: int, stage: str) -> None:
    """Move an invoice to `stage` in the simulated build, without a webhook of its own.

    The test sends the stage event itself, to control its shape; the simulator's own stage
    events are exercised in `test_webhooks_live.py`.
    """
    dataset = simulator.dataset
    with dataset.lock:
        invoice = dataset.invoice(invoice_id)
        dataset._store(replace(invoice, stage=stage, date_modified=int(time.time())))


@dataclass
class HiddenDetail(httpx.AsyncBaseTransport):
    """A build where some invoices answer 404 on `GET invoices/{id}` while they exist (the
    reference may name an `InternalID`), optionally also missing from a list by ID, or
    ignoring the `ID` filter of a list."""

    inner: httpx.AsyncBaseTransport
    hidden: set[int] = field(default_factory=set)
    hidden_from_lists: bool = False
    ignore_id_filter: bool = False
    requests: list[str] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        stem, _, last = path.rpartition("/")
        if stem.endswith("/invoices") and last.isdigit() and int(last) in self.hidden:
            self.requests.append(f"detail {last}")
            return httpx.Response(404, json={"errors": [{"message": "Invoice not found"}]})
        wanted = request.url.params.get("ID")
        if path.endswith("/invoices") and wanted is not None:
            self.requests.append(f"list ID={wanted}")
            if self.hidden_from_lists and wanted.isdigit() and int(wanted) in self.hidden:
                return httpx.Response(200, json=[], headers={"Result-Total": "0"})
            if self.ignore_id_filter:
                request = httpx.Request(
                    request.method,
                    request.url.copy_remove_param("ID"),
                    headers=request.headers,
                )
        return await self.inner.handle_async_request(request)


@asynccontextmanager
async def _service(
    redis_url: str, seed: int, **overrides: Any
) -> AsyncIterator[tuple[Simulator, FastAPI, httpx.AsyncClient, HiddenDetail]]:
    simulator, late, settings = webhook_simulator(
        redis_url, invoices=300, customers=120, seed=seed, **overrides
    )
    transport = HiddenDetail(simulator.transport())
    async with running_app(settings, transport) as (app, client):
        late.app = app
        await wait_for_count(client)
        yield simulator, app, client, transport


async def test_stage_events_move_an_invoice_in_and_out_of_invoice_stages(
    redis_url: str,
) -> None:
    async with _service(redis_url, 41, invoice_stages="Approved") as (simulator, app, client, _):
        dataset = simulator.dataset
        approved = [i for i in dataset.invoice_ids() if dataset.invoice(i).stage == "Approved"]
        invoice = approved[0]
        _, before, _ = await _counts(client)
        assert before == len(approved)

        _set_stage(simulator, invoice, "Pending")
        assert (await _deliver(client, "invoice.stage.pending", invoice))["queued"] is True
        await _drained(app)
        assert (await _counts(client))[1] == before - 1

        _set_stage(simulator, invoice, "Approved")
        assert (await _deliver(client, "invoice.stage.approved", invoice))["queued"] is True
        await _drained(app)
        assert (await _counts(client))[1] == before


async def test_a_signed_event_the_service_does_not_use_gets_200_and_changes_nothing(
    redis_url: str,
) -> None:
    async with _service(redis_url, 42) as (simulator, app, client, transport):
        before = await _counts(client)
        stream = Keys(app.state.runtime.settings.key_prefix).webhook_events
        queued = await app.state.runtime.redis_client.xlen(stream)
        first = simulator.dataset.invoice_ids()[0]
        for event in ("payment.created", "company.customer.updated", "job.stage.complete"):
            answer = await _deliver(client, event, first)
            assert (answer["queued"], answer["reason"]) == (False, "unused")
        assert await app.state.runtime.redis_client.xlen(stream) == queued
        await _drained(app)
        assert await _counts(client) == before
        assert transport.requests == []  # nothing was fetched


async def test_a_reference_with_status_id_beside_invoice_id_applies_the_invoice(
    redis_url: str,
) -> None:
    async with _service(redis_url, 43) as (simulator, app, client, _):
        customers, _, _ = await _counts(client)
        dataset = simulator.dataset
        invoice = dataset.invoice_ids()[0]
        dataset.update_invoice(invoice, customer_id=dataset.uninvoiced_customer_ids()[0])
        expected = simulator.truth().customers
        assert expected != customers
        # statusID names no invoice: read as the record, the fetch would find nothing.
        reference = {"statusID": 3, "companyID": 0, "invoiceID": invoice}
        answer = await _deliver(client, "invoice.status", invoice, reference=reference)
        assert (answer["queued"], answer["id"]) == (True, invoice)
        await _drained(app)
        assert (await _counts(client))[0] == expected


async def test_a_404_after_an_update_does_not_delete_and_a_list_by_id_applies_it(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _service(redis_url, 44) as (simulator, app, client, transport):
        dataset = simulator.dataset
        before = await _counts(client)
        invoice, other = dataset.invoice_ids()[:2]
        transport.hidden = {invoice, other}

        # Found by the list query: applied from it.
        dataset.update_invoice(invoice, customer_id=dataset.uninvoiced_customer_ids()[0])
        await _deliver(client, "invoice.updated", invoice)
        await _drained(app)
        assert transport.requests == [f"detail {invoice}", f"list ID={invoice}"]
        assert (await _counts(client))[0] == simulator.truth().customers != before[0]

        # Not in the list either: kept as the ledger has it, and said once for two.
        transport.hidden_from_lists = True
        moved = await _counts(client)
        with caplog.at_level(logging.WARNING, logger="simpro_counter.webhooks"):
            for event in ("invoice.updated", "invoice.stage.approved"):
                await _deliver(client, event, other)
                await _drained(app)
        assert await _counts(client) == moved
        warnings = [r for r in caplog.records if "is not deleted on that evidence" in r.message]
        assert len(warnings) == 1
        assert "a list query by ID does not find it either" in warnings[0].message


async def test_a_build_ignoring_the_id_filter_never_applies_another_invoice(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _service(redis_url, 45) as (simulator, app, client, transport):
        dataset = simulator.dataset
        before = await _counts(client)
        # An invoice the list's first page does not show first (it is ordered by ID).
        invoice = dataset.invoice_ids()[-1]
        transport.hidden = {invoice}
        transport.ignore_id_filter = True
        with caplog.at_level(logging.WARNING, logger="simpro_counter.webhooks"):
            await _deliver(client, "invoice.created", invoice)
            await _drained(app)
        assert await _counts(client) == before  # neither deleted nor replaced by another
        assert "the build ignores the ID filter of a list query" in caplog.text


async def test_a_404_after_invoice_deleted_deletes(redis_url: str) -> None:
    async with _service(redis_url, 46) as (simulator, app, client, transport):
        dataset = simulator.dataset
        _, invoices, _ = await _counts(client)
        invoice = dataset.invoice_ids()[0]
        dataset.delete_invoice(invoice)
        await simulator.webhooks.flush()  # the simulator's own invoice.deleted
        await _drained(app)
        assert (await _counts(client))[1] == invoices - 1 == simulator.truth().invoices
        # And a 404 on delete is trusted although the list would still find the record.
        survivor = dataset.invoice_ids()[0]
        transport.hidden = {survivor}
        await _deliver(client, "invoice.deleted", survivor)
        await _drained(app)
        assert (await _counts(client))[1] == invoices - 2
        assert transport.requests == [f"detail {survivor}"]  # no list query


async def test_a_replayed_delivery_is_applied_once(redis_url: str) -> None:
    async with _service(redis_url, 47) as (simulator, app, client, _):
        dataset = simulator.dataset
        invoice = dataset.invoice_ids()[0]
        dataset.update_invoice(invoice, customer_id=dataset.uninvoiced_customer_ids()[0])
        applied = _applied(app)
        # One date for the three copies: computed per copy, a second boundary crossed
        # between them would make them different deliveries.
        triggered = _triggered(20)
        answers = [
            await _deliver(client, "invoice.updated", invoice, triggered=triggered)
            for _ in range(3)
        ]
        assert [a.get("reason") for a in answers] == [None, "replayed", "replayed"]
        await _drained(app)
        assert _applied(app) == applied + 1
        assert (await _counts(client))[0] == simulator.truth().customers


async def test_a_stale_delivery_is_acknowledged_and_not_applied(redis_url: str) -> None:
    async with _service(redis_url, 48, webhook_replay_window=600) as (simulator, app, client, _):
        dataset = simulator.dataset
        before = await _counts(client)
        invoice = dataset.invoice_ids()[0]
        dataset.update_invoice(invoice, customer_id=dataset.uninvoiced_customer_ids()[0])
        applied = _applied(app)
        answer = await _deliver(client, "invoice.updated", invoice, seconds_ago=601)
        assert (answer["queued"], answer["reason"]) == (False, "stale")
        await _drained(app)
        assert _applied(app) == applied
        assert await _counts(client) == before
        # The simulator's own, fresh delivery of the same change is applied.
        await simulator.webhooks.flush()
        await _drained(app)
        assert (await _counts(client))[0] == simulator.truth().customers != before[0]


def test_settings_reject_a_window_of_zero() -> None:
    with pytest.raises(ValueError, match="webhook_replay_window"):
        service_settings(None, webhook_replay_window=0)
