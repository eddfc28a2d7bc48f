"""The `<simpro-counter>` widget and the homepage, in a real Chromium.

Everything is real: the service runs as its own process (`simpro-counter serve`) on a real
redis-server, scanning the Simpro simulator over HTTP, and the widget is embedded in pages
served from another origin (another port), as it is on a customer's website.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, Request, Response, expect

from simpro_counter.simulator import RunningSimulator, Simulator, SimulatorConfig, running_simulator
from simpro_counter.store import EmbeddedRedis
from tests.service_fixtures import (
    ADMIN_TOKEN,
    ServiceProcess,
    free_port,
    running_app,
    service_env,
    service_process,
    service_settings,
    stop_process,
    wait_until_counted,
)

TOKEN = ADMIN_TOKEN
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
API_PATH = "/api/simpro/customers"

# widget.js is loaded in <head>, so the counters are created upgraded and are never painted
# undefined (a shift the widget cannot prevent: docs/widget.md). This script, at the end of
# <body>, records each state a counter shows, its box, and any layout shift of the page.
RECORDER = """
window.records = {};
for (const el of document.querySelectorAll("simpro-counter")) {
  const rec = (records[el.id] = { texts: [], boxes: [], busy: [] });
  const note = () => {
    const box = el.getBoundingClientRect();
    rec.texts.push(el.shadowRoot.getElementById("v").textContent);
    rec.boxes.push([box.width, box.height]);
    rec.busy.push(el.shadowRoot.querySelector("[role=status]").getAttribute("aria-busy"));
  };
  note();
  new MutationObserver(note).observe(el.shadowRoot,
    { subtree: true, childList: true, characterData: true, attributes: true });
}
window.shifts = [];
new PerformanceObserver((list) => shifts.push(...list.getEntries().map((e) => e.value)))
  .observe({ type: "layout-shift", buffered: true });
"""


def _page(service_url: str, body: str, style: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A customer's website</title>
<script src="{service_url}/widget.js"></script>
<style>
  body {{ margin: 0; padding: 40px; background: #eef2f7; font-family: "DejaVu Sans", sans-serif;
         color: #0f1b2d; }}
  .card {{ display: inline-block; padding: 28px 44px; background: #fff; border-radius: 16px;
          box-shadow: 0 10px 30px -12px rgba(15, 27, 45, .35); }}
  {style}
</style></head>
<body>
{body}
<p id="after">Content after the counter, which must not move.</p>
<script>{RECORDER}</script>
</body></html>"""


class Site:
    """Static pages on a second loopback port: an origin other than the service's."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path)
                self.send_response(200 if body is not None else 404)
                kind = "application/json" if self.path.endswith(".json") else "text/html"
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, name: str, html: str) -> str:
        self.pages[f"/{name}"] = html.encode()
        return f"{self.url}/{name}"

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Traffic:
    """The counter requests a page made, and what came back."""

    requests: list[tuple[float, Request]] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    failed: list[Request] = field(default_factory=list)

    @classmethod
    def watch(cls, page: Page) -> Traffic:
        traffic = cls()
        page.on("request", traffic._on_request)
        page.on("response", traffic._on_response)
        page.on("requestfailed", traffic._on_failed)
        return traffic

    def _on_request(self, request: Request) -> None:
        if request.url.endswith(API_PATH):
            self.requests.append((time.monotonic(), request))

    def _on_response(self, response: Response) -> None:
        if response.url.endswith(API_PATH):
            self.responses.append(response)

    def _on_failed(self, request: Request) -> None:
        if request.url.endswith(API_PATH):
            self.failed.append(request)


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    # Enough customers for a thousands separator.
    config = SimulatorConfig(invoices=6000, customers=2600, seed=21, rate=0)
    with running_simulator(config) as running:
        yield running


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site() as running:
        yield running


def _env(simulator: RunningSimulator, redis: EmbeddedRedis, **extra: str) -> dict[str, str]:
    return service_env(
        simulator.url,
        prefix="widget",
        redis_url=redis.url,
        admin_token=TOKEN,
        REFRESH_CHECK_INTERVAL="3600",
        **extra,
    )


@pytest.fixture(scope="module")
def service(
    simulator: RunningSimulator,
    shared_redis: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """The service in demo mode (what `make run` starts), with its first value counted."""
    env = _env(simulator, shared_redis, DEMO="true")
    with service_process(env, tmp_path_factory.mktemp("widget-service")) as svc:
        wait_until_counted(svc.url)
        yield svc


def _records(page: Page, element_id: str) -> dict[str, list[Any]]:
    records: dict[str, list[Any]] = page.evaluate(f"records[{element_id!r}]")
    return records


def _shown(page: Page, element_id: str) -> Locator:
    """The number the counter shows (the shadow DOM is open: locators go through it)."""
    return page.locator(f"#{element_id} #v")


def _truth(simulator: RunningSimulator) -> dict[str, Any]:
    """The simulator's ground truth, over HTTP (`GET /__truth`) like any client reads it."""
    truth: dict[str, Any] = httpx.get(f"{simulator.url}/__truth", timeout=10).json()
    return truth


def _money(amount: Decimal, locale: str) -> str:
    """An AUD amount as Intl.NumberFormat writes it, built here digit by digit."""
    digits = f"{amount:,.2f}"  # exact for a Decimal: no float on the way
    if locale == "en-US":
        return f"A${digits}"
    if locale == "en-AU":
        return f"${digits}"
    assert locale == "de-DE"
    return digits.translate(str.maketrans(",.", ".,")) + "\u00a0AU$"


def test_the_widget_script_is_small_cacheable_and_compressed(service: ServiceProcess) -> None:
    plain = httpx.get(f"{service.url}/widget.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/javascript; charset=utf-8"
    assert "max-age=3600" in plain.headers["cache-control"]
    assert plain.headers["cross-origin-resource-policy"] == "cross-origin"
    assert 'customElements.define("simpro-counter"' in plain.text
    gzipped_size = len(gzip.compress(plain.content, compresslevel=9))
    assert gzipped_size < 5 * 1024, f"widget.js is {gzipped_size} bytes gzipped"

    # Served gzipped to browsers, with an ETag of its own per representation.
    raw = httpx.get(f"{service.url}/widget.js", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert int(raw.headers["content-length"]) == len(
        gzip.compress(plain.content, mtime=0, compresslevel=9)
    )
    assert raw.content == plain.content  # httpx decoded it
    assert raw.headers["etag"] != plain.headers["etag"]
    again = httpx.get(
        f"{service.url}/widget.js",
        headers={"Accept-Encoding": "gzip", "If-None-Match": raw.headers["etag"]},
    )
    assert again.status_code == 304
    assert again.content == b""
    head = httpx.head(f"{service.url}/widget.js", headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(plain.content))


def test_on_another_origin_it_shows_the_placeholder_then_the_exact_truth(
    page: Page, service: ServiceProcess, simulator: RunningSimulator, site: Site
) -> None:
    truth = simulator.simulator.truth().customers
    assert truth >= 1000  # so that the separator shows
    body = """
<div class="card" id="card">
  <simpro-counter id="en" label="Clients Served" suffix="+" locale="en-US"></simpro-counter>
</div>
<p>Auf Deutsch: <simpro-counter id="de" label="Kunden" locale="de-DE"
   style="--simpro-counter-font-size: 1em"></simpro-counter></p>"""
    style = """
  #en { --simpro-counter-color: rgb(19, 41, 75); --simpro-counter-label-color: rgb(91, 107, 130);
        --simpro-counter-font-size: 64px; --simpro-counter-label-font-size: 20px; }
  #en::part(label) { text-transform: uppercase; letter-spacing: .08em; }"""
    traffic = Traffic.watch(page)
    page.goto(site.add("cross-origin.html", _page(service.url, body, style)))

    expected = f"{truth:,}+"
    expect(_shown(page, "en")).to_have_text(expected)
    expect(_shown(page, "de")).to_have_text(f"{truth:,}".replace(",", "."))
    expect(page.locator("#en [part=label]")).to_have_text("Clients Served")

    records = _records(page, "en")
    assert records["texts"][0] == "—"  # the placeholder came first ...
    assert records["busy"][0] == "true"
    assert records["texts"][-1] == expected  # ... and the exact number last,
    assert records["busy"][-1] == "false"
    counted_up = set(records["texts"]) - {"—", expected}
    assert counted_up, "no count-up animation"  # ... counted up to, from below.
    assert all(int(text.rstrip("+").replace(",", "")) < truth for text in counted_up)

    # Themed from the page through custom properties and ::part().
    number_color = page.locator("#en [part=number]").evaluate("e => getComputedStyle(e).color")
    assert number_color == "rgb(19, 41, 75)"
    label = page.locator("#en [part=label]").evaluate("e => getComputedStyle(e).textTransform")
    assert label == "uppercase"

    # Attributes are properties too (React 19 sets properties on custom elements).
    page.locator("#de").evaluate("e => { e.suffix = '+'; e.label = 'Kundschaft' }")
    expect(_shown(page, "de")).to_have_text(f"{truth:,}+".replace(",", "."))
    expect(page.locator("#de [part=label]")).to_have_text("Kundschaft")
    assert page.locator("#de").get_attribute("suffix") == "+"

    # A real cross-origin read: the page's origin, the service's CORS answer.
    assert page.evaluate("location.origin") == site.url != service.url
    assert {request.url for _, request in traffic.requests} == {f"{service.url}{API_PATH}"}
    ok = [response for response in traffic.responses if response.status == 200]
    assert ok
    assert ok[0].request.all_headers()["origin"] == site.url
    assert ok[0].all_headers()["access-control-allow-origin"] == "*"

    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    page.locator("#card").screenshot(path=str(DOCS_IMAGES / "widget.png"))


def test_reduced_motion_shows_the_number_at_once_without_layout_shift_and_reads_it(
    page: Page, service: ServiceProcess, simulator: RunningSimulator, site: Site
) -> None:
    truth = simulator.simulator.truth().customers
    page.emulate_media(reduced_motion="reduce")
    body = '<simpro-counter id="c" label="Clients Served" suffix="+" locale="en-US">'
    body += "</simpro-counter>"
    page.goto(site.add("reduced-motion.html", _page(service.url, body)))

    expected = f"{truth:,}+"
    expect(_shown(page, "c")).to_have_text(expected)
    records = _records(page, "c")
    assert records["texts"][0] == "—"
    assert set(records["texts"]) == {"—", expected}  # nothing in between: no animation
    first = records["boxes"][0]
    for width, height in records["boxes"]:  # the placeholder's box, then the number's: same
        assert abs(width - first[0]) <= 1
        assert abs(height - first[1]) <= 1
    assert page.evaluate("shifts") == []  # Chromium saw no layout shift on the page

    # Screen readers get the number and its label, once, from a polite live region.
    status = page.get_by_role("status")
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status).to_have_attribute("aria-busy", "false")
    assert status.aria_snapshot() == f"- status: {expected} Clients Served"


def test_while_the_first_value_is_computed_it_waits_retries_and_then_shows_it(
    page: Page, shared_redis: EmbeddedRedis, site: Site, tmp_path: Path
) -> None:
    # 12 sequential pages of 0.3 s: the first value takes about four seconds.
    config = SimulatorConfig(invoices=600, customers=200, seed=22, rate=0, latency=0.3)
    with running_simulator(config) as simulator:
        env = _env(simulator, shared_redis, SIMPRO_PAGE_SIZE="50", SIMPRO_MAX_IN_FLIGHT="1")
        with service_process(env, tmp_path) as svc:
            traffic = Traffic.watch(page)
            body = '<simpro-counter id="c" label="Clients Served" locale="en-US">'
            page.goto(site.add("populating.html", _page(svc.url, body + "</simpro-counter>")))
            expect(_shown(page, "c")).to_have_text("—")
            expect(page.get_by_role("status")).to_have_attribute("aria-busy", "true")
            expect(page.locator("#c [part=label]")).to_have_text("Clients Served")

            truth = simulator.simulator.truth().customers
            expect(_shown(page, "c")).to_have_text(f"{truth:,}", timeout=20_000)

    first = traffic.responses[0]
    assert first.json()["count"] is None
    assert first.headers["retry-after"] == "5"
    assert len(traffic.requests) >= 2
    # The second request waited as long as the service asked (Retry-After: 5).
    assert traffic.requests[1][0] - traffic.requests[0][0] >= 4.5
    assert traffic.responses[-1].json()["count"] == truth
    assert traffic.failed == []


def test_the_number_stays_while_the_service_is_down_and_updates_when_it_is_back(
    page: Page, shared_redis: EmbeddedRedis, site: Site, tmp_path: Path
) -> None:
    config = SimulatorConfig(invoices=300, customers=300, seed=23, rate=0)
    with running_simulator(config) as simulator:
        env = _env(simulator, shared_redis)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with _serve(env, tmp_path, port):
            truth = wait_until_counted(url)
            traffic = Traffic.watch(page)
            body = '<simpro-counter id="c" label="Clients Served" refresh-interval="1" '
            body += 'locale="en-US"></simpro-counter>'
            page.goto(site.add("outage.html", _page(url, body)))
            expect(_shown(page, "c")).to_have_text(f"{truth:,}")
        # Stopped. The widget keeps polling, fails, and keeps the number it showed.
        _wait_until(lambda: len(traffic.failed) >= 1, page, within=10)
        expect(_shown(page, "c")).to_have_text(f"{truth:,}")
        expect(page.get_by_role("status")).to_have_attribute("aria-busy", "false")

        # A new customer is invoiced meanwhile; the service comes back and counts it.
        dataset = simulator.simulator.dataset
        dataset.add_invoice(customer_id=dataset.uninvoiced_customer_ids()[0])
        with _serve(env, tmp_path, port):
            refreshed = httpx.post(
                f"{url}{API_PATH}/refresh",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            assert refreshed.json()["count"] == truth + 1, refreshed.text
            expect(_shown(page, "c")).to_have_text(f"{truth + 1:,}", timeout=20_000)
    assert page.evaluate("records.c.texts").count("—") == 1  # no placeholder after the value


def test_the_demo_homepage_shows_the_four_counters_with_the_truth(
    page: Page, service: ServiceProcess, simulator: RunningSimulator
) -> None:
    truth = _truth(simulator)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{service.url}/")

    expect(page).to_have_title("Acme Electrical · Licensed electricians, Brisbane")
    counter = page.locator("simpro-counter").first
    expect(counter.locator("#v")).to_have_text(f"{truth['customers']:,}+")
    expect(counter.get_by_role("status")).to_have_attribute("aria-busy", "false")
    # The row of more counters, each from its own metric, en-AU as the page.
    expected = {
        "jobs": ("Jobs taken on", f"{truth['jobs']:,}"),
        "quotes": ("Free quotes written", f"{truth['quotes']:,}"),
        "revenue": ("Invoiced for our clients", _money(Decimal(truth["revenue"]), "en-AU")),
    }
    for metric, (label, text) in expected.items():
        other = page.locator(f"simpro-counter[metric={metric}]")
        expect(other.locator("#v")).to_have_text(text, timeout=20_000)
        expect(other.locator("[part=label]")).to_have_text(label)
        expect(other.get_by_role("status")).to_have_attribute("aria-busy", "false")
    assert page.locator("simpro-counter").count() == 4
    for metric in ("customers", *expected):
        assert f"{service.url}/api/simpro/{metric}" in requested
    expect(page.locator(".origin").first).to_have_text(service.url)  # the embed snippet
    # Everything from the service itself: no CDN, no web font, no tracker.
    assert requested
    assert all(url.startswith((service.url, "data:")) for url in requested)

    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMAGES / "homepage.png"))


def test_the_widget_with_metric_jobs_shows_the_jobs_and_follows_a_new_one(
    page: Page, service: ServiceProcess, simulator: RunningSimulator, site: Site
) -> None:
    truth = _truth(simulator)
    jobs = truth["jobs"]
    assert jobs >= 1000  # so that the separator shows
    assert jobs != truth["customers"]  # not the default metric's number by chance
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    body = """
<simpro-counter id="jobs" metric="jobs" label="Jobs taken on" locale="en-US" refresh-interval="1">
</simpro-counter>
<simpro-counter id="jobs-de" metric="jobs" label="Aufträge" locale="de-DE"></simpro-counter>"""
    page.goto(site.add("jobs.html", _page(service.url, body)))

    expect(_shown(page, "jobs")).to_have_text(f"{jobs:,}", timeout=20_000)
    expect(_shown(page, "jobs-de")).to_have_text(f"{jobs:,}".replace(",", "."))
    records = _records(page, "jobs")
    assert records["texts"][0] == "—"  # the same placeholder and count-up as customers
    assert records["busy"][0] == "true"
    assert set(records["texts"]) - {"—", f"{jobs:,}"}, "no count-up animation"

    # A new job in Simpro; the service counts it on a refresh; the polling widget follows.
    created = httpx.post(f"{simulator.url}/__jobs", json={}, timeout=10)
    assert created.status_code == 201, created.text
    assert _truth(simulator)["jobs"] == jobs + 1
    refreshed = httpx.post(
        f"{service.url}/api/simpro/jobs/refresh",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert refreshed.json()["count"] == jobs + 1, refreshed.text
    expect(_shown(page, "jobs")).to_have_text(f"{jobs + 1:,}", timeout=10_000)
    status = page.locator("#jobs").get_by_role("status")
    assert status.aria_snapshot() == f"- status: {jobs + 1:,} Jobs taken on"
    # Without refresh-interval the other asked once and keeps what it showed.
    expect(_shown(page, "jobs-de")).to_have_text(f"{jobs:,}".replace(",", "."))

    counter_requests = [url for url in requested if "/api/simpro/" in url]
    assert set(counter_requests) == {f"{service.url}/api/simpro/jobs"}
    assert len(counter_requests) >= 3  # two first reads, then the polls


def test_the_widget_with_metric_revenue_shows_the_exact_total_as_currency(
    page: Page, service: ServiceProcess, simulator: RunningSimulator, site: Site
) -> None:
    total = Decimal(_truth(simulator)["revenue"])
    assert total >= 1_000_000
    assert total != total.to_integral_value()  # there are cents to show
    answer = httpx.get(f"{service.url}/api/simpro/revenue", timeout=10).json()
    assert (answer["total"], answer["currency"]) == (str(total), "AUD")
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    body = """
<simpro-counter id="us" metric="revenue" label="Invoiced" locale="en-US" currency="AUD"
   digits="7"></simpro-counter>
<simpro-counter id="de" metric="revenue" label="Umsatz" locale="de-DE"></simpro-counter>"""
    page.goto(site.add("revenue-metric.html", _page(service.url, body)))

    expect(_shown(page, "us")).to_have_text(_money(total, "en-US"), timeout=20_000)
    expect(_shown(page, "de")).to_have_text(_money(total, "de-DE"))
    records = _records(page, "us")
    assert records["texts"][0] == "—"
    assert records["texts"][-1] == _money(total, "en-US")
    assert len(set(records["texts"])) > 2, "no count-up animation"
    assert records["boxes"][0] == records["boxes"][-1]  # `digits` + `currency`: no shift
    status = page.locator("#de").get_by_role("status")
    spoken = _money(total, "de-DE").replace("\u00a0", " ")  # the snapshot normalises spaces
    assert status.aria_snapshot() == f"- status: {spoken} Umsatz"
    assert {url for url in requested if "/api/simpro/" in url} == {
        f"{service.url}/api/simpro/revenue"
    }


def test_it_works_and_is_styled_under_a_strict_content_security_policy(
    page: Page, service: ServiceProcess, simulator: RunningSimulator, site: Site
) -> None:
    # No inline script or style allowed on this page: the widget's stylesheet is a
    # constructed one, which such a policy does not block.
    truth = simulator.simulator.truth().customers
    policy = f"default-src 'none'; script-src {service.url}; connect-src {service.url}"
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    page.goto(
        site.add(
            "strict-csp.html",
            f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<script src="{service.url}/widget.js" defer></script></head>
<body><simpro-counter id="c" label="Clients Served"></simpro-counter></body></html>""",
        )
    )
    expect(_shown(page, "c")).to_have_text(f"{truth:,}")
    weight = page.locator("#c [part=number]").evaluate("e => getComputedStyle(e).fontWeight")
    assert weight == "700"
    assert [text for text in violations if "Content Security Policy" in text] == []


def test_an_answer_in_money_is_formatted_as_currency(
    page: Page, service: ServiceProcess, site: Site
) -> None:
    # The revenue metric's contract (`total` as a decimal string, and `currency`), read from
    # a file through `src`: any URL that answers the contract works.
    site.add("revenue.json", '{"total": "1234567.89", "currency": "AUD", "cached": true}')
    # More digits than a float holds: shown exactly all the same (no float on the way).
    site.add("huge.json", '{"total": "90071992547409.93", "currency": "AUD"}')
    body = """
<simpro-counter id="aud" src="/revenue.json" label="Invoiced" locale="en-AU" digits="7"
   currency="AUD">
</simpro-counter>
<simpro-counter id="compact" src="/revenue.json" label="Umsatz" locale="de-DE" notation="compact">
</simpro-counter>
<simpro-counter id="huge" src="/huge.json" locale="en-AU"></simpro-counter>"""
    page.emulate_media(reduced_motion="reduce")
    page.goto(site.add("revenue.html", _page(service.url, body)))
    expect(_shown(page, "aud")).to_have_text("$1,234,567.89")  # to the cent
    expect(_shown(page, "compact")).to_have_text("1,2\u00a0Mio.\u00a0AU$")
    expect(_shown(page, "huge")).to_have_text("$90,071,992,547,409.93")
    boxes = _records(page, "aud")["boxes"]
    assert boxes[0] == boxes[-1]  # `digits` and `currency` reserved the room


def test_outside_demo_mode_the_root_is_a_short_page_and_the_widget_is_documented(
    shared_redis: EmbeddedRedis,
) -> None:
    simulator = Simulator(SimulatorConfig(invoices=100, customers=40, seed=24, rate=0))
    settings = service_settings(shared_redis.url)
    assert not settings.demo

    async def get() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with running_app(settings, simulator.transport()) as (_, client):
            return await client.get("/"), await client.head("/"), await client.get("/openapi.json")

    # On a thread of its own: Playwright's sync API holds this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        response, head, openapi = pool.submit(asyncio.run, get()).result()
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Acme" not in response.text
    for link in ('href="/docs"', 'href="/admin"', 'href="/healthz"', 'src="/widget.js"'):
        assert link in response.text
    assert head.status_code == 200
    assert head.content == b""
    paths = openapi.json()["paths"]
    assert list(paths["/widget.js"]) == ["get"]  # documented; the pages are not
    assert "/" not in paths


@contextmanager
def _serve(env: dict[str, str], cwd: Path, port: int) -> Iterator[None]:
    """`simpro-counter serve` on a given port, so it can come back at the same address."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMPRO_", "REDIS"))}
    with (cwd / f"service-{port}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "simpro_counter", "serve", "--port", str(port)],
            env={**full_env, **env},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not start; see {log.name}")
                time.sleep(0.1)
            yield
        finally:
            stop_process(process)


def _wait_until(condition: Callable[[], bool], page: Page, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        page.wait_for_timeout(100)  # lets Playwright deliver the page's events


def test_the_api_docs_work_without_any_cdn(page: Page, service: ServiceProcess) -> None:
    """Swagger UI and ReDoc come from the service itself (a browser here has no internet)."""
    requested: list[Request] = []
    page.on("request", lambda request: requested.append(request))
    page.goto(f"{service.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("simpro-counter")
    expect(page.get_by_text("/api/simpro/{metric}/refresh").first).to_be_visible()
    expect(page.get_by_text("/api/simpro/customers/history").first).to_be_visible()
    assert requested
    assert all(r.url.startswith((service.url, "data:", "blob:")) for r in requested)
    requested.clear()
    page.goto(f"{service.url}/redoc")
    expect(page.locator("h1").first).to_contain_text("simpro-counter")
    expect(page.locator("h2", has_text="Customer growth").first).to_be_attached()
    # Its code and styles are the service's; only ReDoc's "powered by" logo is remote.
    code = [r for r in requested if r.resource_type in ("script", "stylesheet", "fetch")]
    assert code
    assert all(r.url.startswith((service.url, "blob:")) for r in code)
