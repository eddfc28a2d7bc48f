"""The four endpoints of the original contract, with every field and type, auth and errors."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from simpro_counter.simulator import Simulator, SimulatorConfig
from tests.service_fixtures import ADMIN_TOKEN, running_app, service_settings, wait_for_count

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _simulator(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"invoices": 900, "customers": 200, "seed": 21, "rate": 0}
    values.update(overrides)
    return Simulator(SimulatorConfig(**values))


async def test_empty_then_the_exact_count_with_every_field(redis_url: str) -> None:
    simulator = _simulator(latency=0.05)
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        first = await client.get("/api/simpro/customers")
        assert first.status_code == 200
        assert first.json()["count"] is None
        assert first.headers["Retry-After"] == "5"
        body = await wait_for_count(client)
        assert body["count"] == simulator.truth().customers
        assert type(body["count"]) is int
        assert body["cached"] is True
        assert type(body["cacheAge"]) is int
        assert body["source"] == "redis"
        assert type(body["lastUpdated"]) is int
        assert body["lastUpdated"] > 1_700_000_000_000  # epoch milliseconds
        assert body["stale"] is False


async def test_etag_cache_control_and_cors(redis_url: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        await wait_for_count(client)
        response = await client.get(
            "/api/simpro/customers", headers={"Origin": "https://example.com"}
        )
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "stale-while-revalidate" in response.headers["Cache-Control"]
        assert "stale-if-error" in response.headers["Cache-Control"]
        # A CDN may cache an answer fetched without Origin and hand it to a browser: every
        # answer carries the CORS header.
        plain = await client.get("/api/simpro/customers")
        assert plain.headers["Access-Control-Allow-Origin"] == "*"
        etag = response.headers["ETag"]
        again = await client.get("/api/simpro/customers", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.headers["ETag"] == etag
        listed = await client.get(
            "/api/simpro/customers", headers={"If-None-Match": f'W/"other", {etag}'}
        )
        assert listed.status_code == 304
        changed = await client.get("/api/simpro/customers", headers={"If-None-Match": 'W/"x"'})
        assert changed.status_code == 200


async def test_refresh_needs_the_admin_token(redis_url: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        missing = await client.post("/api/simpro/customers/refresh")
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await client.post(
            "/api/simpro/customers/refresh", headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert wrong.json()["success"] is False


async def test_without_admin_token_refresh_is_refused_with_how_to_enable(redis_url: str) -> None:
    simulator = _simulator()
    settings = service_settings(redis_url, admin_token=None)
    async with running_app(settings, simulator.transport()) as (_, client):
        response = await client.post("/api/simpro/customers/refresh", headers=AUTH)
        assert response.status_code == 403
        assert "set ADMIN_TOKEN" in response.json()["error"]


async def test_post_refresh_follows_the_data_with_every_field(redis_url: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        before = await wait_for_count(client)
        new_customer = simulator.dataset.uninvoiced_customer_ids()[0]
        simulator.dataset.add_invoice(customer_id=new_customer)
        response = await client.post("/api/simpro/customers/refresh", headers=AUTH)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        assert body["count"] == simulator.truth().customers == before["count"] + 1
        assert body["totalInvoices"] == simulator.truth().invoices
        assert isinstance(body["duration"], int | float)
        assert body["ttl"] == 21600
        assert ISO.match(body["nextRefresh"])
        assert body["storage"] == "redis"
        after = (await client.get("/api/simpro/customers")).json()
        assert after["count"] == body["count"]


async def test_refresh_status_fields(redis_url: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        await wait_for_count(client)
        body = (await client.get("/api/simpro/customers/refresh")).json()
        assert body["count"] == simulator.truth().customers
        assert ISO.match(body["lastUpdated"])
        assert type(body["ttl"]) is int
        assert 21000 < body["ttl"] <= 21600
        assert ISO.match(body["nextRefresh"])
        assert body["isRefreshing"] is False
        assert body["storage"] == "redis"
        assert body["lastError"] is None
        assert body["lastRefresh"]["totalInvoices"] == simulator.truth().invoices


async def test_init(redis_url: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        body = (await client.get("/api/init")).json()
        assert body["success"] is True
        assert body["message"] == "Initialization completed"
        assert ISO.match(body["timestamp"])


async def test_409_while_running_and_202_in_background(redis_url: str) -> None:
    simulator = _simulator(latency=0.3)
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        await wait_for_count(client)
        accepted = await client.post("/api/simpro/customers/refresh?background=true", headers=AUTH)
        assert accepted.status_code == 202
        assert accepted.json()["isRefreshing"] is True
        busy = await client.post("/api/simpro/customers/refresh", headers=AUTH)
        assert busy.status_code == 409
        assert busy.json()["isRefreshing"] is True
        assert (await client.get("/api/simpro/customers/refresh")).json()["isRefreshing"] is True
        for _ in range(200):
            status = (await client.get("/api/simpro/customers/refresh")).json()
            if not status["isRefreshing"]:
                break
            await asyncio.sleep(0.05)
        assert status["isRefreshing"] is False
        assert status["lastError"] is None


async def test_simpro_outage_keeps_the_old_value_and_shows_the_error(redis_url: str) -> None:
    simulator = _simulator()
    settings = service_settings(redis_url, simpro_retry_attempts=2)
    async with running_app(settings, simulator.transport()) as (_, client):
        before = await wait_for_count(client)
        simulator.faults.rate = 1.0
        simulator.faults.kinds = ("5xx",)
        response = await client.post("/api/simpro/customers/refresh", headers=AUTH)
        assert response.status_code == 502
        assert "failed 2 times" in response.json()["error"]
        assert response.json()["count"] == before["count"]
        after = (await client.get("/api/simpro/customers")).json()
        assert after["count"] == before["count"]
        assert after["lastUpdated"] == before["lastUpdated"]
        # The error itself (Simpro's words) only with the token; the public learns that
        # the last refresh failed, and when.
        public = (await client.get("/api/simpro/customers/refresh")).json()
        assert public["lastError"].startswith("The last refresh failed")
        assert ISO.match(public["lastErrorAt"])
        status = (await client.get("/api/simpro/customers/refresh", headers=AUTH)).json()
        assert "failed 2 times" in status["lastError"]
        assert ISO.match(status["lastErrorAt"])

        simulator.faults.rate = 0.0
        recovered = await client.post("/api/simpro/customers/refresh", headers=AUTH)
        assert recovered.status_code == 200
        status = (await client.get("/api/simpro/customers/refresh")).json()
        assert status["lastError"] is None  # the status tells the latest refresh's story


async def test_health_readiness_and_metrics(redis_url: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        await wait_for_count(client)
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["redis"]["ok"] is True
        assert ready.json()["simpro"]["ok"] is True
        metrics = (await client.get("/metrics")).text
        assert f'simpro_counter_value{{metric="customers"}} {simulator.truth().customers}.0' in (
            metrics
        )
        assert 'simpro_counter_reads_total{metric="customers",source="redis"}' in metrics
        assert "simpro_counter_refresh_duration_seconds_count" in metrics
        assert 'simpro_counter_simpro_requests_total{status="200"}' in metrics
        assert (await client.get("/openapi.json")).status_code == 200


async def test_readyz_reports_simpro_down(redis_url: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        await wait_for_count(client)
        simulator.faults.rate = 1.0
        simulator.faults.kinds = ("5xx",)
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["simpro"]["ok"] is False
