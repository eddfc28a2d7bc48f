"""The typed HTTP contract (`simpro_counter.contract`): the service's answers match it, its
OpenAPI document shows it, and `check` names each field of an answer that breaks it."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simpro_counter.check import run_checks
from simpro_counter.contract import (
    CountAnswer,
    CountRefreshed,
    CountStatus,
    Health,
    HistoryAnswer,
    InitAnswer,
    MoneyAnswer,
    MoneyRefreshed,
    MoneyStatus,
    PendingAnswer,
    Readiness,
    RefreshRefused,
    RefreshStarted,
    Shape,
)
from simpro_counter.simulator import Simulator, SimulatorConfig
from tests.service_fixtures import ADMIN_TOKEN, running_app, service_settings, wait_for_count

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _matches(model: type[Shape], response: httpx.Response, status: int = 200) -> None:
    """The answer validates as `model`, and `model` lists every field the answer has."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    model.model_validate(body)
    listed = {field.alias or name for name, field in model.model_fields.items()}
    assert set(body) <= listed, f"{model.__name__} lacks {sorted(set(body) - listed)}"


async def test_every_answer_of_the_service_matches_its_model(redis_url: str) -> None:
    simulator = Simulator(
        SimulatorConfig(invoices=400, customers=90, seed=31, rate=0, latency=0.05)
    )
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        _matches(PendingAnswer, await client.get("/api/simpro/customers"))
        _matches(PendingAnswer, await client.get("/api/simpro/revenue"))
        await wait_for_count(client)
        _matches(Health, await client.get("/healthz"))
        _matches(CountAnswer, await client.get("/api/simpro/customers"))
        _matches(MoneyAnswer, await client.get("/api/simpro/revenue"))
        _matches(CountStatus, await client.get("/api/simpro/customers/refresh"))
        _matches(MoneyStatus, await client.get("/api/simpro/revenue/refresh"))
        _matches(InitAnswer, await client.get("/api/init"))
        _matches(HistoryAnswer, await client.get("/api/simpro/customers/history"))
        _matches(Readiness, await client.get("/readyz"))
        _matches(CountRefreshed, await client.post("/api/simpro/customers/refresh", headers=AUTH))
        _matches(MoneyRefreshed, await client.post("/api/simpro/revenue/refresh", headers=AUTH))
        jobs = await client.post("/api/simpro/jobs/refresh", headers=AUTH)
        _matches(CountRefreshed, jobs)
        assert jobs.json()["totalInvoices"] is None
        started = await client.post(
            "/api/simpro/customers/refresh", headers=AUTH, params={"background": "true"}
        )
        _matches(RefreshStarted, started, 202)
        running = await client.post("/api/simpro/customers/refresh", headers=AUTH)
        _matches(RefreshRefused, running, 409)
        await wait_for_count(client)


async def test_the_openapi_document_describes_the_answers_with_the_contract_models(
    redis_url: str,
) -> None:
    async with running_app(service_settings(redis_url)) as (_, client):
        document = (await client.get("/openapi.json")).json()

    def refs(path: str, method: str, status: str) -> set[str]:
        schema = document["paths"][path][method]["responses"][status]["content"][
            "application/json"
        ]["schema"]
        return {option["$ref"].rsplit("/", 1)[1] for option in schema.get("anyOf", [schema])}

    metric = "/api/simpro/{metric}"
    assert refs(metric, "get", "200") == {"CountAnswer", "MoneyAnswer", "PendingAnswer"}
    assert refs(f"{metric}/refresh", "get", "200") == {"CountStatus", "MoneyStatus"}
    assert refs(f"{metric}/refresh", "post", "200") == {"CountRefreshed", "MoneyRefreshed"}
    assert refs(f"{metric}/refresh", "post", "202") == {"RefreshStarted"}
    assert refs("/api/simpro/customers/history", "get", "200") == {"HistoryAnswer"}
    assert refs("/api/init", "get", "200") == {"InitAnswer"}
    assert refs("/readyz", "get", "503") == {"Readiness"}
    count = document["components"]["schemas"]["CountAnswer"]
    assert {"count", "cached", "cacheAge", "source", "lastUpdated"} <= set(count["required"])


def _deployment_with_a_broken_counter() -> Starlette:
    """A fake deployment: healthy, but its counter answer breaks the contract."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def customers(request: Request) -> JSONResponse:
        body = {"count": "5", "cached": True, "source": "disk", "lastUpdated": 1_700_000_000}
        return JSONResponse(body, headers={"ETag": 'W/"1"', "Cache-Control": "no-store"})

    return Starlette(routes=[Route("/healthz", healthz), Route("/api/simpro/customers", customers)])


async def test_check_names_each_field_that_breaks_the_contract() -> None:
    transport = httpx.ASGITransport(app=_deployment_with_a_broken_counter())
    async with httpx.AsyncClient(transport=transport) as client:
        results = await run_checks("http://deployment", None, client=client, wait=1)
    by_name = {result.name: result for result in results}
    assert by_name["GET /healthz"].ok
    counter = by_name["GET /api/simpro/customers"]
    assert not counter.ok
    assert set(counter.detail.split("; ")) == {
        "field count: expected a valid integer, got '5'",
        "field cacheAge: missing",
        "field source: expected 'redis' or 'memory', got 'disk'",
        "field lastUpdated: expected epoch milliseconds, got int",
    }
