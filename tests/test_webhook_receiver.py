"""The webhook receiver: signatures, parsing, and POST /api/simpro/webhooks on real Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError

from simpro_counter.errors import BadDeliveryError, SimproCounterError
from simpro_counter.keys import Keys
from simpro_counter.settings import Settings
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.web import create_app
from simpro_counter.web.runtime import Runtime
from simpro_counter.webhooks.events import (
    APPLIED_EVENTS,
    COUNTED_EVENTS,
    ID_KEYS,
    INVOICE_EVENTS,
    KNOWN_EVENTS,
    STAGE_EVENTS,
    split_event,
)
from simpro_counter.webhooks.receiver import Delivery, UnusedEvent, parse_delivery
from simpro_counter.webhooks.signature import sign, verify
from tests.service_fixtures import service_settings

SECRET = "whsec-test"
URL = "/api/simpro/webhooks"


TRIGGERED = "2023-01-31T09:05:27+00:00"


def _now(seconds_ago: float = 0.0) -> str:
    """A `date_triggered` `seconds_ago` (whole seconds, as Simpro sends it)."""
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.replace(microsecond=0).isoformat()


def _payload(
    event: str = "invoice.created", *, triggered: str = TRIGGERED, **reference: Any
) -> dict[str, Any]:
    return _with_reference(event, reference or {"companyID": 0, "invoiceID": 300555}, triggered)


def _with_reference(
    event: str, reference: dict[str, Any], triggered: str = TRIGGERED
) -> dict[str, Any]:
    return {
        "ID": event,
        "build": "23.1.0",
        "action": event.rpartition(".")[2],
        "reference": reference,
        "date_triggered": triggered,
    }


def _delivery_body(
    event: str = "invoice.created", *, seconds_ago: float = 0.0, **reference: Any
) -> bytes:
    """A delivery the endpoint queues: triggered `seconds_ago` (inside the replay window)."""
    return _body(_payload(event, triggered=_now(seconds_ago), **reference))


def _body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# --- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_sign_and_verify(algorithm: str) -> None:
    body = b'{"ID": "invoice.created"}'
    signature = sign(body, SECRET, algorithm)
    assert len(signature) == (40 if algorithm == "sha1" else 64)
    assert verify(body, signature, SECRET, algorithm)
    assert verify(body, signature.upper(), SECRET, algorithm)
    assert verify(body, f"{algorithm}={signature}", SECRET, algorithm)
    assert not verify(body, signature, "another-secret", algorithm)
    assert not verify(body + b" ", signature, SECRET, algorithm)
    other = "sha256" if algorithm == "sha1" else "sha1"
    assert not verify(body, f"{other}={signature}", SECRET, algorithm)
    assert not verify(body, sign(body, SECRET, other), SECRET, algorithm)


def test_sha1_matches_a_known_digest() -> None:
    # HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog"), RFC 2104 example.
    digest = sign(b"The quick brown fox jumps over the lazy dog", "key", "sha1")
    assert digest == "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"


@pytest.mark.parametrize("header", [None, "", "   ", "sha1=", "not-hex", "zz" * 20, "é" * 40])
def test_verify_refuses_missing_or_garbage(header: str | None) -> None:
    assert not verify(b"{}", header, SECRET, "sha1")


def test_verify_refuses_an_empty_secret_and_sign_an_unknown_algorithm() -> None:
    assert not verify(b"{}", sign(b"{}", "", "sha1"), "", "sha1")
    with pytest.raises(ValueError, match="md5"):
        sign(b"{}", SECRET, "md5")


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "key", "resource"),
    [
        ("invoice.created", "invoiceID", "invoice"),
        ("invoice.updated", "invoiceID", "invoice"),
        ("invoice.deleted", "invoiceID", "invoice"),
        ("invoice.status", "invoiceID", "invoice"),
        ("invoice.stage.approved", "invoiceID", "invoice"),
        ("invoice.stage.pending", "invoiceID", "invoice"),
        ("job.created", "jobID", "job"),
        ("job.deleted", "jobID", "job"),
        ("quote.updated", "quoteID", "quote"),
    ],
)
def test_parse_every_event_family(event: str, key: str, resource: str) -> None:
    delivery = parse_delivery(_body(_with_reference(event, {"companyID": 2, key: 52})))
    assert delivery == Delivery(
        event=event,
        resource=resource,
        action=event.removeprefix(f"{resource}."),
        record_id=52,
        company_id=2,
        triggered=TRIGGERED,
    )


def _parsed(body: bytes) -> Delivery:
    parsed = parse_delivery(body)
    assert isinstance(parsed, Delivery), parsed
    return parsed


def test_every_applied_event_parses_and_every_counted_one_is_applied() -> None:
    for event in APPLIED_EVENTS:
        family = split_event(event)
        assert family is not None
        assert _parsed(_body(_with_reference(event, {ID_KEYS[family[0]]: 1}))).event == event
    assert set(COUNTED_EVENTS) <= set(APPLIED_EVENTS) <= set(KNOWN_EVENTS)
    assert set(INVOICE_EVENTS) <= set(COUNTED_EVENTS)
    assert set(STAGE_EVENTS) <= set(INVOICE_EVENTS)  # subscribed by default
    assert split_event("company.customer.created") == ("company.customer", "created")
    assert split_event("invoice.stage.approved") == ("invoice", "stage.approved")
    assert split_event("payment.created") is None
    assert split_event("invoice.") is None


@pytest.mark.parametrize(
    "event",
    [
        "company.customer.created",
        "individual.customer.deleted",
        "payment.created",
        "job.stage.complete",
        "invoice.exploded",
    ],
)
def test_events_the_service_does_not_apply_are_unused_whatever_their_reference(
    event: str,
) -> None:
    # The reference is not read: an event of another family names its record its own way.
    assert parse_delivery(_body(_payload(event, paymentID=3))) == UnusedEvent(event)


def test_parse_string_ids_and_key_case() -> None:
    delivery = _parsed(_body(_payload(companyID="0", invoiceID=" 300555 ")))
    assert (delivery.record_id, delivery.company_id) == (300555, 0)
    # The family's key in another letter case.
    other_case = _parsed(_body(_payload("invoice.updated", InvoiceID="7")))
    assert other_case.record_id == 7
    assert other_case.company_id == 0  # absent companyID: single-company builds use 0
    no_date = _payload()
    del no_date["date_triggered"]
    assert _parsed(_body(no_date)).triggered == ""


def test_extra_reference_keys_name_and_description_are_tolerated() -> None:
    # As payloads seen in the wild: statusID beside invoiceID (in either order), and the
    # subscription's name and description.
    for reference in (
        {"companyID": 0, "statusID": 12, "invoiceID": 300555},
        {"statusID": 12, "companyID": 0, "invoiceID": 300555, "jobID": 9},
    ):
        payload = {
            **_with_reference("invoice.status", reference),
            "name": "simpro-counter",
            "description": "Keeps simpro-counter's counters current",
        }
        delivery = _parsed(_body(payload))
        assert (delivery.event, delivery.record_id, delivery.action) == (
            "invoice.status",
            300555,
            "status",
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Body is not valid JSON"),
        (b"\xff\xfe", "Body is not valid JSON"),
        (b"", "Body is not valid JSON"),
        (b"[1, 2]", "Body must be a JSON object, not an array"),
        (b'"invoice.created"', "Body must be a JSON object, not a string"),
        (_body({"reference": {"invoiceID": 1}}), 'Missing event name: the "ID" field'),
        (_body({"ID": 5, "reference": {}}), '"ID" must be an event name string, not a number'),
        (_body({"ID": "invoice.created"}), '"reference" is missing'),
        (_body({"ID": "invoice.created", "reference": [1]}), '"reference" is an array'),
        (
            _body(_payload(companyID=0)),
            "Missing record ID: \"reference\" has no 'invoiceID' (it has 'companyID')",
        ),
        (
            _body(_payload(companyID=0, jobID=1, quoteID=2)),
            "Missing record ID: \"reference\" has no 'invoiceID'",
        ),
        (_body(_payload(invoiceID="abc")), "reference.invoiceID is 'abc', not an integer ID"),
        (_body(_payload(invoiceID=True)), "reference.invoiceID is True"),
        (_body(_payload(invoiceID=1, companyID=None)), "reference.companyID is missing"),
        # Another *ID key is never read as the record's.
        (
            _body(_payload("invoice.status", companyID=0, statusID=12)),
            "Missing record ID: \"reference\" has no 'invoiceID' (it has 'companyID', 'statusID')",
        ),
    ],
)
def test_parse_malformed(body: bytes, message: str) -> None:
    with pytest.raises(BadDeliveryError) as caught:
        parse_delivery(body)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, SimproCounterError)


# --- the endpoint -------------------------------------------------------------------------


@asynccontextmanager
async def webhook_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Like `running_app`, with a small simulator as Simpro and no webhook worker: these
    tests read the stream as the receiver left it, and the worker deletes what it applies."""
    simulator = Simulator(SimulatorConfig(invoices=20, customers=5, seed=1, rate=0))
    app = create_app(settings, simpro_transport=simulator.transport())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service"
        ) as client,
    ):
        if app.state.runtime.webhooks is not None:
            await app.state.runtime.webhooks.aclose()
        yield app, client


def _settings(redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"webhook_secret": SECRET}
    values.update(overrides)
    return service_settings(redis_url, **values)


async def _post(
    client: httpx.AsyncClient,
    body: bytes,
    *,
    signature: str | None = "sign",
    header: str = "X-Response-Signature",
    algorithm: str = "sha1",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers[header] = sign(body, SECRET, algorithm)
    elif signature is not None:
        headers[header] = signature
    return await client.post(URL, content=body, headers=headers)


async def _stream(app: FastAPI) -> list[tuple[str, dict[str, str]]]:
    runtime: Runtime = app.state.runtime
    entries = await runtime.redis_client.xrange(Keys(runtime.settings.key_prefix).webhook_events)
    return cast("list[tuple[str, dict[str, str]]]", entries)


async def test_valid_delivery_is_queued(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        triggered = _now()
        with caplog.at_level(logging.INFO, logger="simpro_counter"):
            answer = await _post(client, _body(_payload(triggered=triggered)))
        # 200 (earlier versions answered 202): Simpro is answered 200 for every signed delivery.
        assert answer.status_code == 200
        assert answer.json() == {
            "accepted": True,
            "queued": True,
            "event": "invoice.created",
            "id": 300555,
        }
        entries = await _stream(app)
        assert len(entries) == 1
        assert entries[0][1] == {
            "event": "invoice.created",
            "resource": "invoice",
            "action": "created",
            "id": "300555",
            "company": "0",
            "triggered": triggered,
        }
        assert "Webhook invoice.created 300555 queued" in caplog.text
        # Listed in the OpenAPI document.
        assert URL in (await client.get("/openapi.json")).json()["paths"]


async def test_stage_events_are_queued_for_the_invoice(redis_url: str) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        for event in STAGE_EVENTS:
            answer = await _post(client, _delivery_body(event, companyID=0, invoiceID=7))
            assert answer.status_code == 200
            assert answer.json()["queued"] is True
        entries = await _stream(app)
        assert [(f["event"], f["resource"], f["action"], f["id"]) for _, f in entries] == [
            ("invoice.stage.approved", "invoice", "stage.approved", "7"),
            ("invoice.stage.pending", "invoice", "stage.pending", "7"),
        ]


async def test_configurable_header_and_sha256(redis_url: str) -> None:
    settings = _settings(
        redis_url, webhook_signature_header="X-Sig", webhook_signature_algorithm="sha256"
    )
    async with webhook_app(settings) as (app, client):
        body = _delivery_body("job.updated", companyID=0, jobID="9")
        sha1 = await _post(client, body, header="X-Sig", algorithm="sha1")
        assert sha1.status_code == 401
        answer = await _post(client, body, header="X-Sig", algorithm="sha256")
        assert answer.status_code == 200
        assert answer.json()["id"] == 9
        other = _delivery_body("job.updated", companyID=0, jobID="10")
        prefixed = await _post(
            client, other, signature="sha256=" + sign(other, SECRET, "sha256"), header="X-Sig"
        )
        assert prefixed.status_code == 200
        assert len(await _stream(app)) == 2


async def test_bad_or_missing_signature_is_refused(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        body = _delivery_body()
        wrong = sign(body, "not-the-secret", "sha1")
        with caplog.at_level(logging.WARNING, logger="simpro_counter"):
            for signature in (None, "", wrong, "garbage"):
                answer = await _post(client, body, signature=signature)
                assert answer.status_code == 401
                assert answer.json() == {
                    "accepted": False,
                    "error": "Missing or invalid signature",
                }
            # An unused event is refused the same without its signature.
            unused = await _post(client, _delivery_body("payment.created"), signature=wrong)
            assert unused.status_code == 401
        # A body altered after signing is refused too.
        tampered = await _post(client, body, signature=sign(body + b" ", SECRET, "sha1"))
        assert tampered.status_code == 401
        assert await _stream(app) == []
        assert wrong not in caplog.text
        assert SECRET not in caplog.text
        assert "Webhook refused (401)" in caplog.text


async def test_malformed_and_too_large(redis_url: str) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        bad_json = await _post(client, b"{nope")
        assert bad_json.status_code == 400
        assert bad_json.json()["accepted"] is False
        assert bad_json.json()["error"].startswith("Body is not valid JSON")
        no_id = await _post(client, _delivery_body(companyID=0))
        assert no_id.status_code == 400
        assert "Missing record ID" in no_id.json()["error"]
        big = _body({**_payload(triggered=_now()), "padding": "x" * 100_000})
        too_large = await _post(client, big)
        assert too_large.status_code == 413
        assert too_large.json() == {
            "accepted": False,
            "error": "Body too large: the limit is 65536 bytes",
        }

        # Without a Content-Length (chunked): the streamed read stops at the limit.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b"x" * 1024

        chunked = await client.post(URL, content=chunks())
        assert chunked.status_code == 413
        assert await _stream(app) == []


async def test_signed_events_the_service_does_not_use_are_acknowledged_and_not_queued(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Earlier versions answered an unknown event 422: Simpro's policy for failed deliveries is
    # unpublished, so every signed delivery now gets 200.
    async with webhook_app(_settings(redis_url)) as (app, client):
        with caplog.at_level(logging.DEBUG, logger="simpro_counter"):
            for event in ("invoice.exploded", "payment.created", "company.customer.updated"):
                answer = await _post(client, _delivery_body(event, paymentID=1))
                assert answer.status_code == 200
                assert answer.json() == {
                    "accepted": True,
                    "queued": False,
                    "event": event,
                    "reason": "unused",
                }
        assert await _stream(app) == []
        assert "Webhook payment.created acknowledged: not used by this service" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.INFO]


async def test_no_secret_means_disabled(redis_url: str) -> None:
    async with webhook_app(service_settings(redis_url)) as (app, client):
        answer = await _post(client, _delivery_body())
        assert answer.status_code == 503
        assert answer.json()["accepted"] is False
        assert answer.json()["error"].startswith("Webhooks are disabled: set WEBHOOK_SECRET")
        assert await _stream(app) == []


async def test_a_replay_is_acknowledged_and_queued_once(redis_url: str) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        # Triggered 30 s ago: its second is settled, so a copy adds nothing.
        body = _delivery_body(seconds_ago=30)
        first = await _post(client, body)
        assert first.json()["queued"] is True
        for _ in range(3):
            again = await _post(client, body)
            assert again.status_code == 200
            assert again.json() == {
                "accepted": True,
                "queued": False,
                "event": "invoice.created",
                "id": 300555,
                "reason": "replayed",
            }
        # The same invoice, another event or another second: not a replay.
        assert (await _post(client, _delivery_body("invoice.updated", seconds_ago=30))).json()[
            "queued"
        ]
        assert (await _post(client, _delivery_body(seconds_ago=40))).json()["queued"]
        entries = await _stream(app)
        assert [fields["event"] for _, fields in entries] == [
            "invoice.created",
            "invoice.updated",
            "invoice.created",
        ]
        # The mark expires with the window, not later.
        runtime: Runtime = app.state.runtime
        marks = [
            key
            async for key in runtime.redis_client.scan_iter(
                f"{runtime.settings.key_prefix}:webhook_seen:*"
            )
        ]
        assert len(marks) == 3
        ttl = await runtime.redis_client.ttl(marks[0])
        assert 3500 < ttl <= 3600


async def test_an_identical_copy_within_its_second_is_queued_again(redis_url: str) -> None:
    # Two changes to one invoice in the same second arrive as identical bodies; the first
    # copy's fetch may have run before the second change, so the second copy is applied.
    async with webhook_app(_settings(redis_url)) as (app, client):
        body = _delivery_body("invoice.updated")
        assert (await _post(client, body)).json()["queued"] is True
        assert (await _post(client, body)).json()["queued"] is True
        assert len(await _stream(app)) == 2


async def test_a_stale_delivery_is_acknowledged_and_not_queued(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with webhook_app(_settings(redis_url, webhook_replay_window=60)) as (app, client):
        with caplog.at_level(logging.WARNING, logger="simpro_counter"):
            stale = await _post(client, _delivery_body(seconds_ago=61))
        assert stale.status_code == 200
        assert stale.json()["reason"] == "stale"
        assert "longer ago than WEBHOOK_REPLAY_WINDOW (60 s)" in caplog.text
        assert (await _post(client, _delivery_body(seconds_ago=50))).json()["queued"] is True
        assert (await _post(client, _body(_payload(triggered=TRIGGERED)))).json()["reason"] == (
            "stale"
        )
        assert len(await _stream(app)) == 1


@pytest.mark.parametrize("triggered", [None, "", "yesterday", "2023-01-31T09:05:27"])
async def test_a_delivery_whose_date_cannot_be_checked_is_queued(
    redis_url: str, triggered: str | None
) -> None:
    # Absent, unreadable or without an offset (its zone would be a guess): a lost change
    # is worse than a repeated fetch, so every copy is queued.
    async with webhook_app(_settings(redis_url)) as (app, client):
        payload = _payload()
        if triggered is None:
            del payload["date_triggered"]
        else:
            payload["date_triggered"] = triggered
        for _ in range(2):
            assert (await _post(client, _body(payload))).json()["queued"] is True
        assert len(await _stream(app)) == 2


async def test_redis_unavailable_asks_for_a_retry_and_marks_nothing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        redis_client = app.state.runtime.redis_client

        async def failing(*args: Any, **kwargs: Any) -> str:
            raise RedisConnectionError("Connection refused")

        body = _delivery_body(seconds_ago=30)
        for dated in (True, False):  # the replay script, and the plain append
            monkeypatch.setattr(redis_client, "evalsha", failing)
            monkeypatch.setattr(redis_client, "xadd", failing)
            sent = body if dated else _body({**_payload(), "date_triggered": None})
            answer = await _post(client, sent)
            assert answer.status_code == 503
            assert "retry later" in answer.json()["error"]
            assert answer.headers["Retry-After"] == "30"
            monkeypatch.undo()
        assert await _stream(app) == []
        # Simpro's redelivery is no replay: nothing was marked.
        assert (await _post(client, body)).json()["queued"] is True
        assert len(await _stream(app)) == 1
