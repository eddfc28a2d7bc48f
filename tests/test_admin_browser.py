"""The admin dashboard in real Chromium against `simpro-counter serve`, the simulator, Redis."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from simpro_counter.metrics import METRICS
from simpro_counter.simulator import RunningSimulator, SimulatorConfig, running_simulator
from simpro_counter.store import EmbeddedRedis
from tests.browser_fixtures import ARTIFACTS
from tests.service_fixtures import (
    ADMIN_TOKEN,
    ServiceProcess,
    service_env,
    service_process,
    wait_until_counted,
)

DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
DOCS_IMAGE = DOCS_IMAGES / "dashboard.png"
GROWTH_IMAGE = DOCS_IMAGES / "admin-growth.png"


@dataclass(frozen=True)
class Deployment:
    sim: RunningSimulator
    service: ServiceProcess


@pytest.fixture(scope="module")
def deployment(
    shared_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One service process (with ADMIN_TOKEN) over the simulator, its first count done."""
    config = SimulatorConfig(invoices=1500, customers=350, seed=41, rate=0)
    with running_simulator(config) as sim:
        env = service_env(
            sim.url, prefix="admin", redis_url=shared_redis.url, REFRESH_CHECK_INTERVAL="3600"
        )
        with service_process(env, tmp_path_factory.mktemp("admin")) as service:
            wait_until_counted(service.url)
            _wait_for_every_metric(service.url)
            yield Deployment(sim, service)


def _wait_for_every_metric(url: str, within: float = 30.0) -> None:
    """The start-up refreshes of jobs and quotes too, so the history stops moving."""
    deadline = time.monotonic() + within
    for metric in METRICS:
        while True:
            status = httpx.get(f"{url}/api/simpro/{metric}/refresh", timeout=2).json()
            if status["lastUpdated"] is not None and not status["isRefreshing"]:
                break
            assert time.monotonic() < deadline, f"no value for {metric}: {status}"
            time.sleep(0.1)


def _history_length(url: str, interval: str) -> int:
    response = httpx.get(f"{url}/api/simpro/customers/history?interval={interval}", timeout=5)
    assert response.status_code == 200, response.text
    return len(response.json()["history"])


def _sign_in(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/admin")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_without_the_token_the_browser_sees_only_the_login_form(
    page: Page, deployment: Deployment
) -> None:
    url = deployment.service.url
    truth = deployment.sim.simulator.truth().customers
    page.goto(f"{url}/admin")
    expect(page.get_by_label("Admin token")).to_be_visible()
    _sign_in(page, url, "not-the-token")
    expect(page.get_by_role("alert")).to_have_text("Wrong token.")
    content = page.content()
    for secret in (str(truth), f"{truth:,}", "Recent refreshes", "csrf-token", ADMIN_TOKEN):
        assert secret not in content
    assert page.context.cookies() == []
    # The page's own scripts cannot read the state without a session either.
    status = page.evaluate("fetch('/admin/api/state').then(r => r.status)")
    assert status == 401


def test_refresh_now_shows_refreshing_then_the_new_value(
    page: Page, deployment: Deployment
) -> None:
    sim = deployment.sim.simulator
    url = deployment.service.url
    page.set_viewport_size({"width": 1200, "height": 900})
    # A CSP violation or a script error would show up here.
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    _sign_in(page, url, ADMIN_TOKEN)
    card = page.locator('article.metric[data-metric="customers"]')
    value = card.locator('[data-field="value"]')
    expect(value).to_have_attribute("data-value", str(sim.truth().customers))
    expect(card.locator('[data-field="state"]')).to_have_text("fresh")
    rows = page.locator("#history tbody tr")
    expect(rows).not_to_have_count(0)
    before = rows.count()
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in cookie["value"]

    sim.dataset.add_invoice(customer_id=sim.dataset.uninvoiced_customer_ids()[0])
    expected = sim.truth().customers
    sim.latency.mean = 0.6  # the scan now takes about two seconds: long enough to watch
    try:
        card.get_by_role("button", name="Refresh now").click()
        expect(card.locator('[data-field="state"]')).to_have_text("refreshing")
        expect(card.locator('[data-field="refreshing"]')).to_have_text(re.compile(r"^yes"))
        expect(page.locator("#updated")).to_have_text(re.compile(r"^Live"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "admin_dashboard_refreshing.png"), full_page=True)
        expect(value).to_have_attribute("data-value", str(expected), timeout=20_000)
    finally:
        sim.latency.mean = 0.0
    expect(value).to_have_text(f"{expected:,}")
    expect(card.locator('[data-field="state"]')).to_have_text("fresh")
    expect(card.locator('[data-field="message"]')).to_have_text("Refresh finished.")
    expect(rows).to_have_count(before + 1)
    expect(rows.first.locator("td").nth(3)).to_have_text(f"{expected:,}")
    expect(card.locator('[data-field="lastError"]')).to_have_text("none")
    expect(page.locator('#redis [data-field="health"]')).to_have_text("healthy")
    DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMAGE), full_page=True)
    assert problems == []


def test_sign_out_ends_the_session(page: Page, deployment: Deployment) -> None:
    _sign_in(page, deployment.service.url, ADMIN_TOKEN)
    expect(page.locator('article.metric[data-metric="customers"]')).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Admin token")).to_be_visible()
    assert page.context.cookies() == []
    assert page.evaluate("fetch('/admin/api/state').then(r => r.status)") == 401


def test_every_metric_has_a_card_and_the_growth_chart_follows_the_interval(
    page: Page, deployment: Deployment
) -> None:
    url = deployment.service.url
    truth = deployment.sim.simulator.truth()
    page.set_viewport_size({"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    _sign_in(page, url, ADMIN_TOKEN)

    cards = page.locator("article.metric")
    expect(cards).to_have_count(len(METRICS))
    assert [cards.nth(i).get_attribute("data-metric") for i in range(5)] == list(METRICS)
    expected = {
        "customers": (str(truth.customers), f"{truth.customers:,}", ""),
        "invoices": (str(truth.invoices), f"{truth.invoices:,}", ""),
        "revenue": (str(truth.revenue), f"{truth.revenue:,}", "AUD"),
        "jobs": (str(truth.jobs), f"{truth.jobs:,}", ""),
        "quotes": (str(truth.quotes), f"{truth.quotes:,}", ""),
    }
    for metric, (exact, shown, unit) in expected.items():
        card = page.locator(f'article.metric[data-metric="{metric}"]')
        value = card.locator('[data-field="value"]')
        expect(value).to_have_attribute("data-value", exact)
        expect(value).to_have_text(shown)
        expect(card.locator('[data-field="unit"]')).to_have_text(unit)
        expect(card.locator('[data-field="state"]')).to_have_text("fresh")
        expect(card.locator('[data-field="description"]')).to_have_text(METRICS[metric].description)
        expect(card.get_by_role("button", name="Refresh now")).to_be_enabled()
    assert "." in expected["revenue"][1]  # to the cent
    revenue = page.locator('article.metric[data-metric="revenue"]')
    expect(revenue.locator('[data-field="group"]')).to_have_text(
        "in one scan with Unique customers and Invoices"
    )
    jobs = page.locator('article.metric[data-metric="jobs"]')
    expect(jobs.locator('[data-field="group"]')).to_have_text("on its own")
    expect(jobs.locator('[data-field="scan"]')).to_have_text(re.compile(r"^1 request · 0 retries$"))

    months = _history_length(url, "month")
    quarters = _history_length(url, "quarter")
    assert months > quarters > 1
    chart = page.locator("#growth-chart")
    svg = chart.locator("svg")
    expect(svg).to_be_visible()
    expect(chart).to_have_attribute("data-interval", "month")
    expect(svg.locator("rect.new-bar")).to_have_count(months)
    expect(svg).to_have_attribute("role", "img")
    expect(svg).to_have_attribute(
        "aria-label", re.compile(f"{truth.customers:,} customers in total")
    )
    # admin.css colours the chart: the bars take the page's palette, not the file's fallback.
    assert svg.locator("rect.new-bar").first.evaluate("e => getComputedStyle(e).fill") == (
        "rgb(15, 143, 126)"
    )
    assert svg.evaluate("e => e.getBoundingClientRect().width") > 800
    csv = page.get_by_role("link", name="Download CSV")
    expect(csv).to_have_attribute("href", "/api/simpro/customers/history?interval=month&format=csv")

    page.get_by_role("button", name="Quarter").click()
    expect(chart).to_have_attribute("data-interval", "quarter")
    expect(svg.locator("rect.new-bar")).to_have_count(quarters)
    expect(page.get_by_role("button", name="Quarter")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="Month")).to_have_attribute("aria-pressed", "false")
    expect(csv).to_have_attribute(
        "href", "/api/simpro/customers/history?interval=quarter&format=csv"
    )
    first_title = svg.locator("g.period title").first.text_content() or ""
    assert re.fullmatch(r"\d{4}-Q[1-4]: [\d,]+ new, [\d,]+ in total", first_title)
    expect(page.locator("#growth-status")).to_have_text(re.compile("^Customer growth by quarter"))

    GROWTH_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    page.locator("#growth").scroll_into_view_if_needed()
    page.mouse.move(0, 0)  # no period highlighted under the pointer
    page.locator("#growth").screenshot(path=str(GROWTH_IMAGE))
    assert problems == []
