"""Every HTML page's Content-Security-Policy and framing policy, in a real Chromium.

Two `simpro-counter serve` processes (demo mode and not) over the simulator and Redis: each
page must carry the policy, still work under it (the widget shows its number, Swagger UI
and ReDoc show the operations) with no violation reported, and refuse to be framed by
another site. /widget.js stays loadable from any site.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from simpro_counter.simulator import RunningSimulator, SimulatorConfig, running_simulator
from simpro_counter.store import EmbeddedRedis
from tests.service_fixtures import service_env, service_process, wait_until_counted

# Pages the service answers with HTML, and a request that shows each.
PAGES = ("/", "/docs", "/docs/oauth2-redirect", "/redoc", "/admin")
# Collected in the page from its first script on (before any of the page's own runs).
_WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@dataclass(frozen=True)
class Services:
    simulator: RunningSimulator
    demo: str
    plain: str


@dataclass
class Watched:
    """What a page reported while it ran: CSP violations, console errors, exceptions."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        violations: list[str] = self.page.evaluate("window.__violations")
        return [*violations, *self.console_errors, *self.exceptions]


@pytest.fixture(scope="module")
def services(
    shared_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    config = SimulatorConfig(invoices=300, customers=90, seed=52, rate=0)
    with running_simulator(config) as sim:
        env = service_env(
            sim.url, prefix="pages", redis_url=shared_redis.url, REFRESH_CHECK_INTERVAL="3600"
        )
        with (
            service_process({**env, "DEMO": "true"}, tmp_path_factory.mktemp("demo")) as demo,
            service_process(env, tmp_path_factory.mktemp("plain")) as plain,
        ):
            wait_until_counted(demo.url)
            yield Services(sim, demo.url, plain.url)


def _watch(page: Page) -> Watched:
    watched = Watched(page)
    page.add_init_script(_WATCH_VIOLATIONS)
    # Chromium reports each blocked load or inline script or style on the console too
    # (other errors, such as ReDoc's logo not loading offline, are not the policy's).
    page.on(
        "console",
        lambda message: (
            watched.console_errors.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: watched.exceptions.append(str(error)))
    return watched


def _directives(policy: str) -> dict[str, str]:
    pairs = (part.strip().partition(" ") for part in policy.split(";") if part.strip())
    return {name: sources for name, _, sources in pairs}


@pytest.mark.parametrize("path", PAGES)
def test_every_html_page_has_a_policy_and_refuses_framing(services: Services, path: str) -> None:
    for base in (services.demo, services.plain):
        response = httpx.get(f"{base}{path}", timeout=10)
        assert response.status_code in (200, 403), response.text
        assert response.headers["content-type"].startswith("text/html")
        directives = _directives(response.headers["content-security-policy"])
        assert directives["default-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["object-src"] == "'none'"
        assert directives["base-uri"] == "'none'"
        assert "'unsafe-inline'" not in directives["script-src"]
        assert "'unsafe-eval'" not in directives["script-src"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_each_inline_script_is_allowed_by_its_hash_and_nothing_else(services: Services) -> None:
    # The homepage's one inline script: allowed by its hash; another inline script is not.
    page = httpx.get(f"{services.demo}/", timeout=10)
    script_src = _directives(page.headers["content-security-policy"])["script-src"]
    hashes = re.findall(r"'sha256-[A-Za-z0-9+/=]+'", script_src)
    assert len(hashes) == len(re.findall(r"<script>", page.text)) == 1
    assert script_src == f"'self' {hashes[0]}"


def test_the_widget_script_stays_embeddable_by_any_site(services: Services) -> None:
    response = httpx.get(f"{services.demo}/widget.js", timeout=10)
    assert response.status_code == 200
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "x-frame-options" not in response.headers
    assert "content-security-policy" not in response.headers


def test_the_demo_homepage_shows_its_counters_with_no_policy_violation(
    page: Page, services: Services
) -> None:
    watched = _watch(page)
    truth: dict[str, Any] = httpx.get(f"{services.simulator.url}/__truth", timeout=10).json()
    page.goto(f"{services.demo}/")
    counter = page.locator("simpro-counter").first
    expect(counter.locator("#v")).to_have_text(f"{truth['customers']:,}+")
    expect(page.locator(".origin").first).to_have_text(services.demo)  # the inline script ran
    assert watched.problems() == []


def test_the_landing_page_shows_the_counter_with_no_policy_violation(
    page: Page, services: Services
) -> None:
    watched = _watch(page)
    truth: dict[str, Any] = httpx.get(f"{services.simulator.url}/__truth", timeout=10).json()
    page.goto(f"{services.plain}/")
    expect(page.locator("simpro-counter").first.locator("#v")).to_have_text(
        re.compile(rf"^{truth['customers']:,}\+?$")
    )
    expect(page.locator(".origin").first).to_have_text(services.plain)
    assert watched.problems() == []


def _operations(base: str) -> list[tuple[str, str]]:
    """(method, path) of every documented operation, from the service's OpenAPI."""
    paths: dict[str, dict[str, Any]] = httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


def test_swagger_ui_shows_every_operation_with_no_policy_violation(
    page: Page, services: Services
) -> None:
    watched = _watch(page)
    operations = _operations(services.plain)
    page.goto(f"{services.plain}/docs")
    expect(page.locator(".opblock")).to_have_count(len(operations), timeout=20_000)
    _, path = operations[0]
    expect(page.locator(".opblock-summary-path", has_text=path).first).to_be_visible()
    assert watched.problems() == []


def test_redoc_shows_the_operations_with_no_policy_violation(
    page: Page, services: Services
) -> None:
    watched = _watch(page)
    operations = _operations(services.plain)
    page.goto(f"{services.plain}/redoc")
    expect(page.locator("[data-section-id^='operation/']")).to_have_count(
        len(operations), timeout=20_000
    )
    assert watched.problems() == []


@contextmanager
def _framing_site(target: str) -> Iterator[str]:
    """Another origin on this machine (a real server: a page the browser got from nowhere
    may not frame a loopback address at all) whose one page frames `target`."""
    body = f'<!doctype html><title>framer</title><iframe src="{target}"></iframe>'.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_another_site_cannot_frame_a_page(page: Page, services: Services, path: str) -> None:
    with _framing_site(f"{services.demo}{path}") as framer:
        # The browser refuses the service's answer in the frame and shows its error page.
        with page.expect_event(
            "framenavigated", lambda frame: frame != page.main_frame, timeout=20_000
        ) as navigated:
            page.goto(framer)
        assert navigated.value.url.startswith("chrome-error://"), navigated.value.url
