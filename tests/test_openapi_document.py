"""The OpenAPI document against the service's answers, one point at a time: the methods a
405 names, the content types and statuses the document gives. `test_openapi_fuzz.py`
covers the same ground with generated requests."""

from __future__ import annotations

from typing import Any

from simpro_counter import contract
from simpro_counter.settings import Settings
from tests.service_fixtures import running_app, service_settings

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _settings(redis_url: str) -> Settings:
    return service_settings(redis_url, webhook_secret="test-webhook-secret")


def _allow(header: str) -> list[str]:
    return [method.strip() for method in header.split(",")]


async def test_a_405_names_exactly_the_methods_of_the_path(redis_url: str) -> None:
    async with running_app(_settings(redis_url)) as (_, client):
        expected = {
            ("OPTIONS", "/widget.js"): ["GET", "HEAD"],
            ("OPTIONS", "/api/simpro/webhooks"): ["POST"],
            ("GET", "/api/simpro/webhooks"): ["POST"],  # not a metric named "webhooks"
            ("GET", "/api/simpro/webhooks/x"): None,  # no such path: 404, no Allow
            ("OPTIONS", "/api/simpro/customers/refresh"): ["GET", "POST"],
            ("PUT", "/api/simpro/customers"): ["GET", "HEAD"],
            ("DELETE", "/healthz"): ["GET", "HEAD"],
            ("POST", "/"): ["GET", "HEAD"],
            ("HEAD", "/readyz"): ["GET"],
        }
        for (method, path), methods in expected.items():
            response = await client.request(method, path)
            if methods is None:
                assert response.status_code == 404, (method, path)
                assert "allow" not in response.headers
                continue
            assert response.status_code == 405, (method, path, response.text)
            assert _allow(response.headers["allow"]) == methods, (method, path)
            if method != "HEAD":
                assert response.json() == {"detail": "Method Not Allowed"}


async def test_every_documented_path_allows_what_the_document_says(redis_url: str) -> None:
    async with running_app(_settings(redis_url)) as (_, client):
        document: dict[str, Any] = (await client.get("/openapi.json")).json()
        assert document["paths"]
        for template, item in document["paths"].items():
            path = template.replace("{metric}", "customers")
            response = await client.request("TRACE", path)
            assert response.status_code == 405, path
            documented = {method.upper() for method in item if method in HTTP_METHODS}
            # HEAD is answered wherever GET is documented beside a HEAD route; the document
            # leaves HEAD implicit.
            assert set(_allow(response.headers["allow"])) - {"HEAD"} == documented, path


async def test_an_unknown_metric_is_a_404_also_to_head_and_documented_as_such(
    redis_url: str,
) -> None:
    async with running_app(_settings(redis_url)) as (_, client):
        assert (await client.head("/api/simpro/nope")).status_code == 404
        unknown = await client.get("/api/simpro/nope")
        assert unknown.status_code == 404
        assert unknown.json()["error"].startswith("Unknown metric 'nope'")
        assert (await client.get("/api/simpro/webhooks/refresh")).status_code == 404
        assert (await client.head("/healthz")).status_code == 200
        document = (await client.get("/openapi.json")).json()
    for path in ("/api/simpro/{metric}", "/api/simpro/{metric}/refresh"):
        for operation in document["paths"][path].values():
            (metric,) = [p for p in operation["parameters"] if p["in"] == "path"]
            assert metric["schema"]["enum"] == [
                "customers",
                "invoices",
                "revenue",
                "jobs",
                "quotes",
            ]
            assert "404" in operation["responses"]


async def test_a_cors_preflight_still_passes_where_a_plain_options_is_a_405(
    redis_url: str,
) -> None:
    async with running_app(_settings(redis_url)) as (_, client):
        preflight = await client.options(
            "/api/simpro/customers/refresh",
            headers={
                "Origin": "https://www.example.com",
                "Access-Control-Request-Method": "GET",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        plain = await client.options("/api/simpro/customers/refresh")
        assert plain.status_code == 405
        assert _allow(plain.headers["allow"]) == ["GET", "POST"]


async def test_metrics_are_documented_with_the_content_type_they_are_sent_with(
    redis_url: str,
) -> None:
    async with running_app(_settings(redis_url)) as (_, client):
        document = (await client.get("/openapi.json")).json()
        sent = (await client.get("/metrics")).headers["content-type"]
    content = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == [sent]
    assert sent.startswith("text/plain; version=")


async def test_the_refresh_documents_its_bearer_token_and_every_refusal(redis_url: str) -> None:
    async with running_app(_settings(redis_url)) as (_, client):
        document = (await client.get("/openapi.json")).json()
    post = document["paths"]["/api/simpro/{metric}/refresh"]["post"]
    assert {"200", "202", "401", "403", "404", "409", "422", "429", "502"} <= set(post["responses"])
    assert "Retry-After" in post["responses"]["429"]["headers"]
    assert "WWW-Authenticate" in post["responses"]["401"]["headers"]
    (scheme,) = post["security"][0]
    assert document["components"]["securitySchemes"][scheme] == {
        "type": "http",
        "scheme": "bearer",
        "description": "ADMIN_TOKEN of the server",
    }


async def test_the_document_shows_webhook_backpressure_and_caching(
    redis_url: str,
) -> None:
    async with running_app(_settings(redis_url)) as (_, client):
        document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    webhook = paths["/api/simpro/webhooks"]["post"]
    assert "Retry-After" in webhook["responses"]["503"]["headers"]
    assert webhook["requestBody"]["content"]["application/json"]["schema"] == {"type": "object"}
    for path in ("/api/simpro/{metric}", "/api/simpro/customers/history"):
        get = paths[path]["get"]
        assert "304" in get["responses"], path
        assert "If-None-Match" in {p["name"] for p in get["parameters"]}, path


async def test_refusals_match_the_models_the_document_gives_them(redis_url: str) -> None:
    async with running_app(_settings(redis_url)) as (_, client):
        document = (await client.get("/openapi.json")).json()
        answers = {
            ("/api/simpro/{metric}/refresh", "post", "401"): await client.post(
                "/api/simpro/customers/refresh"
            ),
            ("/api/simpro/{metric}/refresh", "post", "404"): await client.post(
                "/api/simpro/nope/refresh"
            ),
            ("/api/simpro/{metric}/refresh", "post", "422"): await client.post(
                "/api/simpro/customers/refresh", params={"mode": "sideways"}
            ),
            ("/api/simpro/{metric}/refresh", "get", "404"): await client.get(
                "/api/simpro/nope/refresh"
            ),
            ("/api/simpro/customers/history", "get", "422"): await client.get(
                "/api/simpro/customers/history", params={"interval": "week"}
            ),
            ("/api/simpro/customers/history", "get", "503"): await client.get(
                "/api/simpro/customers/history"
            ),
            ("/api/simpro/webhooks", "post", "401"): await client.post(
                "/api/simpro/webhooks", content=b"{}"
            ),
        }
    for (path, method, status), response in answers.items():
        assert str(response.status_code) == status, (path, method, response.text)
        schema = document["paths"][path][method]["responses"][status]["content"][
            "application/json"
        ]["schema"]
        model = getattr(contract, schema["$ref"].rsplit("/", 1)[1])
        model.model_validate(response.json())
        assert set(response.json()) <= {f.alias or n for n, f in model.model_fields.items()}
