"""Every metric served like customers, exact against the simulator's truth, kept current."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.store import EmbeddedRedis
from tests.service_fixtures import (
    ADMIN_TOKEN,
    running_app,
    service_settings,
    wait_for_count,
    webhook_simulator,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _simulator(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"invoices": 900, "customers": 250, "seed": 61, "rate": 0}
    values.update(overrides)
    return Simulator(SimulatorConfig(**values))


async def _wait_for(
    client: httpx.AsyncClient, path: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    for _ in range(400):
        body: dict[str, Any] = (await client.get(path)).json()
        if done(body):
            return body
        await asyncio.sleep(0.025)
    raise AssertionError(f"{path} never got there: {body}")


async def _all_values(client: httpx.AsyncClient) -> dict[str, Any]:
    """Each metric's answer, once every one has its first value and the refreshes that
    made them have finished (a refresh publishes first, then releases its lock)."""
    await wait_for_count(client)
    for group in ("jobs", "quotes"):
        await _wait_for(
            client,
            f"/api/simpro/{group}/refresh",
            lambda b: b["count"] is not None and not b["isRefreshing"],
        )
    answers = {}
    for metric in ("customers", "invoices", "jobs", "quotes", "revenue"):
        answers[metric] = (await client.get(f"/api/simpro/{metric}")).json()
    return answers


def _period(day: date, interval: str) -> str:
    if interval == "month":
        return f"{day.year:04d}-{day.month:02d}"
    if interval == "quarter":
        return f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year:04d}"


def _next_period(period: str, interval: str) -> str:
    if interval == "month":
        year, month = map(int, period.split("-"))
        return f"{year + month // 12:04d}-{month % 12 + 1:02d}"
    if interval == "quarter":
        year, quarter = int(period[:4]), int(period[-1])
        return f"{year + quarter // 4:04d}-Q{quarter % 4 + 1}"
    return f"{int(period) + 1:04d}"


def _assert_history_is_the_truth(body: dict[str, Any], simulator: Simulator, interval: str) -> None:
    """New customers per period equal the simulator's first invoice dates, without gaps."""
    points = body["history"]
    expected = Counter(
        _period(d, interval) for d in simulator.dataset.first_invoice_dates().values()
    )
    assert body["interval"] == interval
    assert {p["period"]: p["new"] for p in points if p["new"]} == dict(expected)
    assert points[0]["period"] == min(expected)
    assert points[-1]["period"] == max(expected)
    running = 0
    for previous, point in zip([None, *points], points, strict=False):
        if previous is not None:
            assert point["period"] == _next_period(previous["period"], interval)  # no gaps
        running += point["new"]
        assert point["cumulative"] == running  # so it never goes down
    assert points[-1]["cumulative"] == simulator.truth().customers == body["total"]
    assert body["undated"] == 0


async def test_every_metric_is_exact_against_the_truth(redis_url: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        answers = await _all_values(client)
        truth = simulator.truth()
        assert answers["customers"]["count"] == truth.customers
        assert answers["invoices"]["count"] == truth.invoices
        assert answers["jobs"]["count"] == truth.jobs
        assert answers["quotes"]["count"] == truth.quotes
        revenue = answers["revenue"]
        assert revenue["total"] == str(truth.revenue)  # to the cent, as a string
        assert Decimal(revenue["total"]).as_tuple().exponent == -2
        assert revenue["currency"] == "AUD"
        assert "count" not in revenue
        for answer in answers.values():
            assert answer["cached"] is True
            assert answer["source"] == "redis"
            assert answer["stale"] is False
        # The same fast path and cache headers as customers.
        response = await client.get("/api/simpro/jobs", headers={"Origin": "https://x.example"})
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        etag = response.headers["ETag"]
        again = await client.get("/api/simpro/jobs", headers={"If-None-Match": etag})
        assert again.status_code == 304

        # A count Simpro reports in Result-Total costs one request.
        simulator.stats.reset()
        simulator.dataset.add_work("jobs")
        refreshed = await client.post("/api/simpro/jobs/refresh", headers=AUTH)
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["count"] == truth.jobs + 1
        assert refreshed.json()["requests"] == 1
        assert simulator.stats.total == 1

        # Refreshing revenue scans once and publishes all three invoice metrics.
        first = simulator.dataset.uninvoiced_customer_ids()[0]
        simulator.dataset.add_invoice(customer_id=first, total_ex_tax=Decimal("1000.10"))
        refreshed = await client.post("/api/simpro/revenue/refresh", headers=AUTH)
        assert refreshed.status_code == 200, refreshed.text
        body = refreshed.json()
        assert body["total"] == str(truth.revenue + Decimal("1000.10"))
        assert body["currency"] == "AUD"
        assert (await client.get("/api/simpro/customers")).json()["count"] == truth.customers + 1
        assert (await client.get("/api/simpro/invoices")).json()["count"] == truth.invoices + 1
        status = (await client.get("/api/simpro/revenue/refresh")).json()
        assert status["total"] == body["total"]
        assert status["isRefreshing"] is False
        assert status["lastRefresh"]["requests"] >= 1
        assert status["lastRefresh"]["total"] == body["total"]  # its own value, not customers'
        assert "count" not in status["lastRefresh"]
        invoices_status = (await client.get("/api/simpro/invoices/refresh")).json()
        assert invoices_status["lastRefresh"]["count"] == truth.invoices + 1


async def test_unknown_metrics_are_404_with_the_known_ones(redis_url: str) -> None:
    simulator = _simulator(invoices=50)
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        for method, path in (
            ("GET", "/api/simpro/profit"),
            ("GET", "/api/simpro/profit/refresh"),
            ("POST", "/api/simpro/profit/refresh"),
        ):
            response = await client.request(method, path, headers=AUTH)
            assert response.status_code == 404, path
            assert "customers, invoices, revenue, jobs, quotes" in response.json()["error"]


@pytest.mark.parametrize("interval", ["month", "quarter", "year"])
async def test_history_is_exact_from_the_first_scan(redis_url: str, interval: str) -> None:
    simulator = _simulator()
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        await wait_for_count(client)
        response = await client.get(f"/api/simpro/customers/history?interval={interval}")
        assert response.status_code == 200
        body = response.json()
        _assert_history_is_the_truth(body, simulator, interval)
        # Years of history, not only since installation.
        assert len({p["period"][:4] for p in body["history"]}) >= 2

        download = await client.get(f"/api/simpro/customers/history?interval={interval}&format=csv")
        assert download.status_code == 200
        assert download.headers["content-type"].startswith("text/csv")
        assert f"customer-growth-by-{interval}.csv" in download.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(download.text)))
        assert rows == [
            {"period": p["period"], "new": str(p["new"]), "cumulative": str(p["cumulative"])}
            for p in body["history"]
        ]
        cached = await client.get(
            f"/api/simpro/customers/history?interval={interval}",
            headers={"If-None-Match": response.headers["ETag"]},
        )
        assert cached.status_code == 304


async def test_history_waits_for_the_first_scan_and_refuses_bad_intervals(
    redis_url: str,
) -> None:
    simulator = _simulator(latency=0.2)
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        early = await client.get("/api/simpro/customers/history")
        assert early.status_code == 503
        assert "first full scan" in early.json()["error"]
        assert early.headers["Retry-After"] == "5"
        bad = await client.get("/api/simpro/customers/history?interval=week")
        assert bad.status_code == 422
        assert bad.json()["success"] is False
        assert bad.json()["error"].startswith("interval: Input should be 'month', 'quarter'")
        mode = await client.post("/api/simpro/jobs/refresh?mode=sometimes", headers=AUTH)
        assert mode.status_code == 422
        assert mode.json()["error"].startswith("mode: Input should be 'full' or 'incremental'")
        await wait_for_count(client)
        assert (await client.get("/api/simpro/customers/history")).status_code == 200


async def test_webhooks_keep_every_metric_and_the_history_current(redis_url: str) -> None:
    simulator, late, settings = webhook_simulator(redis_url, invoices=600, customers=250, seed=62)
    async with running_app(settings, simulator.transport()) as (app, client):
        late.app = app
        before = await _all_values(client)
        history_before = (await client.get("/api/simpro/customers/history")).json()
        simulator.stats.reset()
        newcomer = simulator.dataset.uninvoiced_customer_ids()[0]

        invoice = simulator.dataset.add_invoice(
            customer_id=newcomer, total_ex_tax=Decimal("1234.56")
        )
        await simulator.webhooks.flush()
        expected = Decimal(before["revenue"]["total"]) + Decimal("1234.56")
        await _wait_for(client, "/api/simpro/revenue", lambda b: b["total"] == str(expected))
        invoices = (await client.get("/api/simpro/invoices")).json()["count"]
        assert invoices == before["invoices"]["count"] + 1 == simulator.truth().invoices
        history = (await client.get("/api/simpro/customers/history")).json()
        _assert_history_is_the_truth(history, simulator, "month")
        assert history["total"] == history_before["total"] + 1

        simulator.dataset.update_invoice(invoice, total_ex_tax=Decimal("0.01"))  # re-priced
        await simulator.webhooks.flush()
        repriced = Decimal(before["revenue"]["total"]) + Decimal("0.01")
        await _wait_for(client, "/api/simpro/revenue", lambda b: b["total"] == str(repriced))

        simulator.dataset.delete_invoice(invoice)
        await simulator.webhooks.flush()
        await _wait_for(
            client, "/api/simpro/revenue", lambda b: b["total"] == before["revenue"]["total"]
        )
        assert (await client.get("/api/simpro/revenue")).json()["total"] == str(
            simulator.truth().revenue
        )
        history = (await client.get("/api/simpro/customers/history")).json()
        assert history["history"] == history_before["history"]

        simulator.dataset.add_work("jobs")
        simulator.dataset.add_work("quotes")
        await simulator.webhooks.flush()
        truth = simulator.truth()
        await _wait_for(client, "/api/simpro/jobs", lambda b: b["count"] == truth.jobs)
        await _wait_for(client, "/api/simpro/quotes", lambda b: b["count"] == truth.quotes)
    # Three invoice fetches, one count each for jobs and quotes: never a scan.
    assert simulator.stats.total <= 6


async def test_incremental_sync_keeps_revenue_and_history_current(redis_url: str) -> None:
    simulator = _simulator(seed=63)
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        await _all_values(client)
        newcomer = simulator.dataset.uninvoiced_customer_ids()[0]
        simulator.dataset.add_invoice(customer_id=newcomer, total_ex_tax=Decimal("99.99"))
        simulator.dataset.update_invoice(
            simulator.dataset.invoice_ids()[0], total_ex_tax=Decimal("12.34")
        )
        await asyncio.sleep(1.1)  # If-Modified-Since has whole seconds
        simulator.stats.reset()
        synced = await client.post("/api/simpro/revenue/refresh?mode=incremental", headers=AUTH)
        assert synced.status_code == 200, synced.text
        assert synced.json()["total"] == str(simulator.truth().revenue)
        assert synced.json()["lastSync"]["changed"] >= 2
        assert simulator.stats.total <= 2
        counted = (await client.get("/api/simpro/invoices")).json()["count"]
        assert counted == simulator.truth().invoices
        history = (await client.get("/api/simpro/customers/history?interval=quarter")).json()
        _assert_history_is_the_truth(history, simulator, "quarter")


async def test_configured_invoice_stages_and_types_decide_what_counts(redis_url: str) -> None:
    simulator = _simulator(seed=64)
    settings = service_settings(
        redis_url, invoice_stages="Approved", invoice_types="TaxInvoice, ProgressInvoice"
    )
    async with running_app(settings, simulator.transport()) as (_, client):
        answers = await _all_values(client)
    dataset = simulator.dataset
    counted = [
        dataset.invoice(i)
        for i in dataset.invoice_ids()
        if dataset.invoice(i).stage == "Approved"
        and dataset.invoice(i).type in ("TaxInvoice", "ProgressInvoice")
    ]
    assert 0 < len(counted) < simulator.truth().invoices  # the filter does leave some out
    assert answers["invoices"]["count"] == len(counted)
    assert answers["customers"]["count"] == len(
        {i.customer_id for i in counted if i.customer_id is not None}
    )
    cents = sum(i.ex_tax for i in counted)
    assert answers["revenue"]["total"] == str(Decimal(cents).scaleb(-2).quantize(Decimal("0.01")))


async def test_prometheus_exports_every_metric(redis_url: str) -> None:
    simulator = _simulator(invoices=300)
    async with running_app(service_settings(redis_url), simulator.transport()) as (_, client):
        answers = await _all_values(client)
        text = (await client.get("/metrics")).text
    truth = simulator.truth()
    for metric, value in (
        ("customers", truth.customers),
        ("invoices", truth.invoices),
        ("jobs", truth.jobs),
        ("quotes", truth.quotes),
    ):
        assert f'simpro_counter_value{{metric="{metric}"}} {float(value)}' in text
    revenue = float(Decimal(answers["revenue"]["total"]))
    assert f'simpro_counter_value{{metric="revenue"}} {revenue}' in text
    assert 'simpro_counter_value_age_seconds{metric="quotes"}' in text


class _CorruptRecord(httpx.AsyncBaseTransport):
    """Answers GET of one invoice with a Total.ExTax that is not a number."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.invoice_id: int | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if self.invoice_id is None or not request.url.path.endswith(f"/invoices/{self.invoice_id}"):
            return response
        await response.aread()
        body = response.json()
        body["Total"]["ExTax"] = "lots"
        return httpx.Response(200, json=body)


async def test_a_malformed_invoice_in_a_webhook_changes_nothing_and_blocks_nothing(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    simulator, late, settings = webhook_simulator(redis_url, invoices=300, customers=150, seed=65)
    corrupt = _CorruptRecord(simulator.transport())
    async with running_app(settings, corrupt) as (app, client):
        late.app = app
        before = await _all_values(client)
        bad_owner, good_owner = simulator.dataset.uninvoiced_customer_ids()[:2]
        bad = simulator.dataset.add_invoice(customer_id=bad_owner, total_ex_tax=Decimal("50"))
        corrupt.invoice_id = bad
        await simulator.webhooks.flush()
        for _ in range(200):
            if f"invoice {bad}: Total.ExTax is 'lots', not a number" in caplog.text:
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError("the malformed invoice was not reported")
        for metric in ("customers", "invoices", "revenue"):
            kept = (await client.get(f"/api/simpro/{metric}")).json()
            assert kept.get("count", kept.get("total")) == before[metric].get(
                "count", before[metric].get("total")
            )
        # The queue moved on: the next invoice is applied.
        simulator.dataset.add_invoice(customer_id=good_owner, total_ex_tax=Decimal("7.25"))
        await simulator.webhooks.flush()
        expected = Decimal(before["revenue"]["total"]) + Decimal("7.25")
        await _wait_for(client, "/api/simpro/revenue", lambda b: b["total"] == str(expected))
        assert (await client.get("/api/simpro/customers")).json()["count"] == (
            before["customers"]["count"] + 1
        )


async def test_with_redis_gone_every_metric_and_the_history_keep_answering(
    redis_server: EmbeddedRedis,
) -> None:
    simulator = _simulator(seed=66)
    settings = service_settings(redis_server.url)
    async with running_app(settings, simulator.transport()) as (_, client):
        before = await _all_values(client)
        history = (await client.get("/api/simpro/customers/history?interval=quarter")).json()
        await asyncio.to_thread(redis_server.stop)
        try:
            for metric, answer in before.items():
                kept = (await client.get(f"/api/simpro/{metric}")).json()
                assert kept.get("count", kept.get("total")) == answer.get(
                    "count", answer.get("total")
                ), metric
            kept_history = await client.get("/api/simpro/customers/history?interval=quarter")
            assert kept_history.status_code == 200
            assert kept_history.json()["history"] == history["history"]
            # An interval not asked for before is computed from the dates read before.
            by_year = await client.get("/api/simpro/customers/history?interval=year")
            assert by_year.status_code == 200
            assert by_year.json()["total"] == history["total"] == simulator.truth().customers
        finally:
            await asyncio.to_thread(redis_server.start)


class _SlowJobs(httpx.AsyncBaseTransport):
    """Holds every request for the jobs list while `slow` is set (a rate-limited Simpro)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.slow = False
        self.held = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.slow and request.url.path.rstrip("/").endswith("/jobs"):
            self.held += 1
            await asyncio.sleep(3.0)
        return await self._inner.handle_async_request(request)


async def test_a_slow_recount_of_jobs_does_not_hold_up_invoice_events(redis_url: str) -> None:
    simulator, late, settings = webhook_simulator(redis_url, invoices=300, customers=150, seed=67)
    slow = _SlowJobs(simulator.transport())
    async with running_app(settings, slow) as (app, client):
        late.app = app
        before = await _all_values(client)
        slow.slow = True
        simulator.dataset.add_work("jobs")
        await simulator.webhooks.flush()
        for _ in range(200):  # the recount has started and is held
            if slow.held:
                break
            await asyncio.sleep(0.01)
        assert slow.held == 1
        newcomer = simulator.dataset.uninvoiced_customer_ids()[0]
        simulator.dataset.add_invoice(customer_id=newcomer, total_ex_tax=Decimal("12.00"))
        await simulator.webhooks.flush()
        expected = str(Decimal(before["revenue"]["total"]) + Decimal("12.00"))
        started = time.monotonic()
        await _wait_for(client, "/api/simpro/revenue", lambda b: b["total"] == expected)
        assert time.monotonic() - started < 2.0  # not behind the 3 s recount
        assert (await client.get("/api/simpro/jobs")).json()["count"] == before["jobs"]["count"]
        truth = simulator.truth()
        await _wait_for(client, "/api/simpro/jobs", lambda b: b["count"] == truth.jobs)
