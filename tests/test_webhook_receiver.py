"""The webhook receiver: signatures, parsing, and POST /api/simpro/webhooks on real Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError

from simpro_counter.errors import BadDeliveryError, SimproCounterError, UnknownEventError
from simpro_counter.keys import Keys
from simpro_counter.settings import Settings
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.web import create_app
from simpro_counter.web.runtime import Runtime
from simpro_counter.webhooks.events import COUNTED_EVENTS, ID_KEYS, INVOICE_EVENTS, KNOWN_EVENTS
from simpro_counter.webhooks.receiver import Delivery, parse_delivery
from simpro_counter.webhooks.signature import sign, verify
from tests.service_fixtures import service_settings

SECRET = "whsec-test"
URL = "/api/simpro/webhooks"


def _payload(event: str = "invoice.created", **reference: Any) -> dict[str, Any]:
    return {
        "ID": event,
        "build": "23.1.0",
        "action": event.rpartition(".")[2],
        "reference": reference or {"companyID": 0, "invoiceID": 300555},
        "date_triggered": "2023-01-31T09:05:27+00:00",
    }


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
        ("job.created", "jobID", "job"),
        ("job.deleted", "jobID", "job"),
        ("quote.updated", "quoteID", "quote"),
        ("company.customer.created", "customerID", "company.customer"),
        ("individual.customer.deleted", "customerID", "individual.customer"),
    ],
)
def test_parse_every_event_family(event: str, key: str, resource: str) -> None:
    delivery = parse_delivery(_body(_payload(event, companyID=2, **{key: 52})))
    assert delivery == Delivery(
        event=event,
        resource=resource,
        action=event.rpartition(".")[2],
        record_id=52,
        company_id=2,
        triggered="2023-01-31T09:05:27+00:00",
    )


def test_every_known_event_parses_and_every_counted_one_is_known() -> None:
    for event in KNOWN_EVENTS:
        resource = event.rpartition(".")[0]
        key = ID_KEYS[resource]
        assert parse_delivery(_body(_payload(event, **{key: 1}))).event == event
    assert set(COUNTED_EVENTS) <= set(KNOWN_EVENTS)
    assert set(INVOICE_EVENTS) <= set(COUNTED_EVENTS)


def test_parse_string_ids_and_fallback_key() -> None:
    delivery = parse_delivery(_body(_payload(companyID="0", invoiceID=" 300555 ")))
    assert (delivery.record_id, delivery.company_id) == (300555, 0)
    # A customer event whose reference names the ID differently: the single other *ID key.
    fallback = parse_delivery(_body(_payload("company.customer.updated", CustomerID="7")))
    assert fallback.record_id == 7
    assert fallback.company_id == 0  # absent companyID: single-company builds use 0
    no_date = _payload()
    del no_date["date_triggered"]
    assert parse_delivery(_body(no_date)).triggered == ""


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
    ],
)
def test_parse_malformed(body: bytes, message: str) -> None:
    with pytest.raises(BadDeliveryError) as caught:
        parse_delivery(body)
    assert str(caught.value).startswith(message)
    assert not isinstance(caught.value, UnknownEventError)
    assert isinstance(caught.value, SimproCounterError)


def test_parse_unknown_event() -> None:
    with pytest.raises(UnknownEventError, match=r"Unknown event 'invoice\.exploded'; known: "):
        parse_delivery(_body(_payload("invoice.exploded", invoiceID=1)))


# --- the endpoint -------------------------------------------------------------------------


@asynccontextmanager
async def webhook_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Like `running_app`, with a small simulator as Simpro."""
    simulator = Simulator(SimulatorConfig(invoices=20, customers=5, seed=1, rate=0))
    app = create_app(settings, simpro_transport=simulator.transport())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service"
        ) as client,
    ):
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
        with caplog.at_level(logging.INFO, logger="simpro_counter"):
            answer = await _post(client, _body(_payload()))
        assert answer.status_code == 202
        assert answer.json() == {"accepted": True, "event": "invoice.created", "id": 300555}
        entries = await _stream(app)
        assert len(entries) == 1
        assert entries[0][1] == {
            "event": "invoice.created",
            "resource": "invoice",
            "action": "created",
            "id": "300555",
            "company": "0",
            "triggered": "2023-01-31T09:05:27+00:00",
        }
        assert "Webhook invoice.created 300555 queued" in caplog.text
        # Listed in the OpenAPI document.
        assert URL in (await client.get("/openapi.json")).json()["paths"]


async def test_configurable_header_and_sha256(redis_url: str) -> None:
    settings = _settings(
        redis_url, webhook_signature_header="X-Sig", webhook_signature_algorithm="sha256"
    )
    async with webhook_app(settings) as (app, client):
        body = _body(_payload("job.updated", companyID=0, jobID="9"))
        sha1 = await _post(client, body, header="X-Sig", algorithm="sha1")
        assert sha1.status_code == 401
        answer = await _post(client, body, header="X-Sig", algorithm="sha256")
        assert answer.status_code == 202
        assert answer.json()["id"] == 9
        prefixed = await _post(
            client, body, signature="sha256=" + sign(body, SECRET, "sha256"), header="X-Sig"
        )
        assert prefixed.status_code == 202
        assert len(await _stream(app)) == 2


async def test_bad_or_missing_signature_is_refused(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        body = _body(_payload())
        wrong = sign(body, "not-the-secret", "sha1")
        with caplog.at_level(logging.WARNING, logger="simpro_counter"):
            for signature in (None, "", wrong, "garbage"):
                answer = await _post(client, body, signature=signature)
                assert answer.status_code == 401
                assert answer.json() == {
                    "accepted": False,
                    "error": "Missing or invalid signature",
                }
        # A body altered after signing is refused too.
        tampered = await _post(client, body, signature=sign(body + b" ", SECRET, "sha1"))
        assert tampered.status_code == 401
        assert await _stream(app) == []
        assert wrong not in caplog.text
        assert SECRET not in caplog.text
        assert "Webhook refused (401)" in caplog.text


async def test_malformed_unknown_and_too_large(redis_url: str) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        bad_json = await _post(client, b"{nope")
        assert bad_json.status_code == 400
        assert bad_json.json()["accepted"] is False
        assert bad_json.json()["error"].startswith("Body is not valid JSON")
        no_id = await _post(client, _body(_payload(companyID=0)))
        assert no_id.status_code == 400
        assert "Missing record ID" in no_id.json()["error"]
        unknown = await _post(client, _body(_payload("invoice.exploded", invoiceID=1)))
        assert unknown.status_code == 422
        assert unknown.json()["error"].startswith("Unknown event 'invoice.exploded'")
        big = _body({**_payload(), "padding": "x" * 100_000})
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


async def test_no_secret_means_disabled(redis_url: str) -> None:
    async with webhook_app(service_settings(redis_url)) as (app, client):
        answer = await _post(client, _body(_payload()))
        assert answer.status_code == 503
        assert answer.json()["accepted"] is False
        assert answer.json()["error"].startswith("Webhooks are disabled: set WEBHOOK_SECRET")
        assert await _stream(app) == []


async def test_duplicate_delivery_is_queued_twice(redis_url: str) -> None:
    # Deliberate: de-duplication happens when events are applied (idempotently), not here.
    async with webhook_app(_settings(redis_url)) as (app, client):
        body = _body(_payload())
        assert (await _post(client, body)).status_code == 202
        assert (await _post(client, body)).status_code == 202
        entries = await _stream(app)
        assert [fields["id"] for _, fields in entries] == ["300555", "300555"]


async def test_redis_unavailable_asks_for_a_retry(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with webhook_app(_settings(redis_url)) as (app, client):
        redis_client = app.state.runtime.redis_client

        async def failing_xadd(*args: Any, **kwargs: Any) -> str:
            raise RedisConnectionError("Connection refused")

        monkeypatch.setattr(redis_client, "xadd", failing_xadd)
        answer = await _post(client, _body(_payload()))
        assert answer.status_code == 503
        assert "retry later" in answer.json()["error"]
        assert answer.headers["Retry-After"] == "30"
        monkeypatch.undo()
        assert await _stream(app) == []
