"""The admin over HTTP: closed without ADMIN_TOKEN, sessions, CSRF, origins, headers, state.

The app runs in-process with its lifespan, a real redis-server and the simulator.
"""

from __future__ import annotations

import asyncio
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from simpro_counter.metrics import METRICS, Interval, growth_history, refresh_groups
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.web.admin.session import SessionCodec
from tests.service_fixtures import ADMIN_TOKEN, running_app, service_settings, wait_for_count

ORIGIN = "http://service"  # the in-process client's base URL: same origin
COOKIE = "simpro_admin"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SVG = "{http://www.w3.org/2000/svg}"


def _simulator(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"invoices": 600, "customers": 150, "seed": 31, "rate": 0}
    values.update(overrides)
    return Simulator(SimulatorConfig(**values))


@asynccontextmanager
async def _admin_app(
    redis_url: str, simulator: Simulator | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    simulator = simulator or _simulator()
    settings = service_settings(redis_url, **overrides)
    async with running_app(settings, simulator.transport()) as (_, client):
        await wait_for_count(client)
        await _wait_for_every_metric(client)
        yield client


async def _wait_for_every_metric(client: httpx.AsyncClient, within: float = 30.0) -> None:
    """The scheduler refreshes every group at start (customers, jobs, quotes): wait for all."""
    deadline = time.monotonic() + within
    for metric in METRICS:
        while True:
            status = (await client.get(f"/api/simpro/{metric}/refresh")).json()
            if status["lastUpdated"] is not None and not status["isRefreshing"]:
                break
            assert time.monotonic() < deadline, f"no value for {metric}: {status}"
            await asyncio.sleep(0.05)


def _expected_values(simulator: Simulator) -> dict[str, str]:
    """What each card must show as `display`: the simulator's truth, revenue to the cent."""
    truth = simulator.truth()
    return {
        "customers": str(truth.customers),
        "invoices": str(truth.invoices),
        "revenue": str(truth.revenue),
        "jobs": str(truth.jobs),
        "quotes": str(truth.quotes),
    }


def _by_name(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {metric["metric"]: metric for metric in state["metrics"]}


async def _login(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    return await client.post(
        "/admin/login",
        data={"token": token},
        headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"},
    )


async def _session(client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """Log in; the Cookie header to send from now on, and the page's CSRF token."""
    response = await _login(client)
    assert response.status_code == 303, response.text
    client.cookies.clear()  # the cookie is sent by hand below, nothing implicit
    cookies = _cookie(response.cookies[COOKIE])
    page = await client.get("/admin", headers=cookies)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert match, page.text
    return cookies, match.group(1)


def _cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


def _set_cookie(response: httpx.Response) -> list[str]:
    return [part.strip() for part in response.headers["set-cookie"].split(";")]


def _assert_secured(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_without_admin_token_the_admin_explains_how_to_enable_it(redis_url: str) -> None:
    simulator = _simulator()
    async with _admin_app(redis_url, simulator, admin_token=None) as client:
        page = await client.get("/admin")
        assert page.status_code == 403
        assert "ADMIN_TOKEN" in page.text
        assert "disabled" in page.text
        assert str(simulator.truth().customers) not in page.text
        assert "<script" not in page.text
        _assert_secured(page)
        state = await client.get("/admin/api/state")
        assert state.status_code == 403
        assert set(state.json()) == {"error"}
        login = await _login(client, "anything")
        assert login.status_code == 403
        assert "set-cookie" not in login.headers
        refresh = await client.post("/admin/api/refresh", headers={"Origin": ORIGIN})
        assert refresh.status_code == 403
        chart = await client.get("/admin/api/growth.svg")
        assert chart.status_code == 403
        assert set(chart.json()) == {"error"}


async def test_unauthenticated_requests_see_the_login_form_and_no_data(redis_url: str) -> None:
    simulator = _simulator()
    async with _admin_app(redis_url, simulator) as client:
        page = await client.get("/admin")
        assert page.status_code == 200
        assert 'name="token"' in page.text
        assert 'action="/admin/login"' in page.text
        assert str(simulator.truth().customers) not in page.text
        _assert_secured(page)
        state = await client.get("/admin/api/state")
        assert state.status_code == 401
        assert set(state.json()) == {"error"}
        _assert_secured(state)
        refresh = await client.post("/admin/api/refresh", headers={"Origin": ORIGIN})
        assert refresh.status_code == 401

        wrong = await _login(client, "not-the-token")
        assert wrong.status_code == 401
        assert "Wrong token" in wrong.text
        assert "set-cookie" not in wrong.headers


async def test_login_sets_a_signed_strict_http_only_cookie(redis_url: str) -> None:
    async with _admin_app(redis_url) as client:
        response = await _login(client)
        assert response.status_code == 303
        assert response.headers["location"] == "/admin"
        _assert_secured(response)
        attributes = _set_cookie(response)
        lowered = [attribute.lower() for attribute in attributes]
        assert "httponly" in lowered
        assert "samesite=strict" in lowered
        assert "path=/admin" in lowered
        assert "max-age=43200" in lowered
        assert "secure" not in lowered  # plain http here; see the https test below
        value = response.cookies[COOKIE]
        assert ADMIN_TOKEN not in value
        assert ADMIN_TOKEN not in response.headers["set-cookie"]

        # Over https the cookie is Secure (behind a proxy: when FORWARDED_ALLOW_IPS trusts
        # it, tests/test_server_limits.py). A client's own X-Forwarded-Proto does not count.
        over_https = await client.post(
            "https://service/admin/login",
            data={"token": ADMIN_TOKEN},
            headers={"Origin": "https://service"},
        )
        assert over_https.status_code == 303
        assert "secure" in [attribute.lower() for attribute in _set_cookie(over_https)]
        claimed = await client.post(
            "/admin/login", data={"token": ADMIN_TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
        assert claimed.status_code == 303
        assert "secure" not in [attribute.lower() for attribute in _set_cookie(claimed)]


async def test_state_has_every_field(redis_url: str) -> None:
    simulator = _simulator()
    async with _admin_app(redis_url, simulator) as client:
        cookies, _ = await _session(client)
        response = await client.get("/admin/api/state", headers=cookies)
        assert response.status_code == 200
        _assert_secured(response)
        state = response.json()
    assert ISO.match(state["now"])
    assert state["storage"] == "redis"
    assert state["redis"]["healthy"] is True
    assert re.fullmatch(r"127\.0\.0\.1:\d+", state["redis"]["location"])
    assert state["redis"]["lastError"] is None
    # One card per metric of the registry, in its order, each with the true value.
    assert [metric["metric"] for metric in state["metrics"]] == list(METRICS)
    metrics = _by_name(state)
    truth = simulator.truth()
    assert {name: m["display"] for name, m in metrics.items()} == _expected_values(simulator)
    assert metrics["customers"]["value"] == truth.customers
    assert metrics["invoices"]["value"] == truth.invoices
    assert metrics["revenue"]["value"] == int(truth.revenue * 100)  # stored in cents
    assert metrics["revenue"]["currency"] == metrics["revenue"]["unit"] == "AUD"
    assert metrics["customers"]["unit"] == "customers"
    assert metrics["jobs"]["value"] == truth.jobs
    assert metrics["quotes"]["value"] == truth.quotes
    assert {
        name: m["currency"] for name, m in metrics.items() if name != "revenue"
    } == dict.fromkeys(("customers", "invoices", "jobs", "quotes"))
    assert {name: m["refreshGroup"] for name, m in metrics.items()} == {
        "customers": "customers",
        "invoices": "customers",
        "revenue": "customers",
        "jobs": "jobs",
        "quotes": "quotes",
    }
    assert metrics["customers"]["label"] == "Unique customers"
    assert metrics["revenue"]["label"] == "Revenue"
    for name, metric in metrics.items():
        assert metric["description"] == METRICS[name].description
        assert metric["state"] == "fresh", name
        assert metric["stale"] is False
        assert metric["isRefreshing"] is False
        assert metric["refreshingSince"] is None
        assert 0 <= metric["age"] < 30
        assert metric["ttl"] == 21600
        assert ISO.match(metric["computedAt"])
        assert ISO.match(metric["nextRefresh"])
        assert metric["storage"] == "redis"
        assert metric["lastError"] is None
        assert metric["lastRefresh"]["ok"] is True
        assert ISO.match(metric["lastRefresh"]["finishedAt"])
        assert metric["lastRefresh"]["retries"] == 0
        assert metric["lastRefresh"]["duration"] >= 0
    # The invoice metrics come from one scan: the same report on each of their cards.
    last = metrics["customers"]["lastRefresh"]
    assert metrics["invoices"]["lastRefresh"] == metrics["revenue"]["lastRefresh"] == last
    assert last["totalInvoices"] == truth.invoices
    assert last["pages"] >= 3
    assert last["requests"] >= last["pages"]
    # Jobs and quotes are one Result-Total request each: no pages, no invoices.
    for name in ("jobs", "quotes"):
        report = metrics[name]["lastRefresh"]
        assert report["requests"] >= 1
        assert report["pages"] is None
        assert report["totalInvoices"] is None
    # The history has one row per refresh that ran: one per group, at start.
    history = state["history"]
    assert sorted(entry["metric"] for entry in history) == sorted(refresh_groups())
    [entry] = [entry for entry in history if entry["metric"] == "customers"]
    assert entry["ok"] is True
    assert entry["mode"] == "full"
    assert entry["count"] == truth.customers
    assert entry["totalInvoices"] == truth.invoices
    assert ISO.match(entry["finishedAt"])
    for name in ("jobs", "quotes"):
        [row] = [row for row in history if row["metric"] == name]
        assert row["ok"] is True
        assert row["count"] == getattr(truth, name)
    for entry in history:
        assert set(entry) == {
            "metric",
            "finishedAt",
            "ok",
            "mode",
            "count",
            "totalInvoices",
            "duration",
            "pages",
            "requests",
            "retries",
            "error",
        }
    assert ADMIN_TOKEN not in response.text


async def test_refresh_needs_the_csrf_token_and_the_same_origin(redis_url: str) -> None:
    simulator = _simulator()
    async with _admin_app(redis_url, simulator) as client:
        cookies, csrf = await _session(client)
        other_cookies, other_csrf = await _session(client)
        same = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}

        async def post(headers: dict[str, str], jar: dict[str, str] = cookies) -> httpx.Response:
            return await client.post("/admin/api/refresh", headers={**headers, **jar})

        assert (await post(same)).status_code == 403  # no CSRF token
        assert (await post({**same, "X-CSRF-Token": "forged"})).status_code == 403
        # Each session has its own token: another session's does not do.
        assert (await post({**same, "X-CSRF-Token": other_csrf})).status_code == 403
        assert other_csrf != csrf
        foreign = {"Origin": "https://evil.example", "X-CSRF-Token": csrf}
        assert (await post(foreign)).status_code == 403
        cross_site = {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": csrf}
        assert (await post(cross_site)).status_code == 403
        other_port = {"Origin": "http://service:8080", "X-CSRF-Token": csrf}
        assert (await post(other_port)).status_code == 403
        # `Origin: null` (sandboxed frames; also our own pages under no-referrer) passes
        # only when the browser vouches with Sec-Fetch-Site.
        opaque = {"Origin": "null", "X-CSRF-Token": csrf}
        assert (await post(opaque)).status_code == 403
        assert (await post({**opaque, "Sec-Fetch-Site": "cross-site"})).status_code == 403
        denied = await post(foreign)
        _assert_secured(denied)
        assert "error" in denied.json()

        simulator.dataset.add_invoice(customer_id=simulator.dataset.uninvoiced_customer_ids()[0])
        simulator.latency.mean = 0.05  # long enough to see it running
        started = await post({**same, "X-CSRF-Token": csrf})
        assert started.status_code == 202, started.text
        assert started.json()["started"] is True
        busy = await post({**same, "X-CSRF-Token": other_csrf}, other_cookies)
        assert busy.status_code == 409
        assert busy.json()["isRefreshing"] is True
        # Revenue's card refreshes the same scan: it is running already.
        shared = await client.post(
            "/admin/api/refresh?metric=revenue",
            headers={**same, "X-CSRF-Token": csrf, **cookies},
        )
        assert shared.status_code == 409
        unknown = await client.post(
            "/admin/api/refresh?metric=nope",
            headers={**same, "X-CSRF-Token": csrf, **cookies},
        )
        assert unknown.status_code == 404

        state = await _wait_until_idle(client, cookies)
    metrics = _by_name(state)
    assert {name: m["display"] for name, m in metrics.items()} == _expected_values(simulator)
    assert {m["state"] for m in metrics.values()} == {"fresh"}
    # The start-up scan and this one: two rows of the customers group, newest first.
    customers_rows = [entry for entry in state["history"] if entry["metric"] == "customers"]
    assert len(customers_rows) == 2
    assert state["history"][0]["metric"] == "customers"
    assert state["history"][0]["count"] == simulator.truth().customers
    assert customers_rows[1]["count"] == simulator.truth().customers - 1
    assert len(state["history"]) == 2 + len(refresh_groups()) - 1  # jobs, quotes once each


async def _wait_until_idle(client: httpx.AsyncClient, cookies: dict[str, str]) -> dict[str, Any]:
    """Poll the state until the customers refresh is over; its group shows it running."""
    deadline = time.monotonic() + 20
    started: set[str] = set()
    while True:
        state: dict[str, Any] = (await client.get("/admin/api/state", headers=cookies)).json()
        metrics = _by_name(state)
        if not metrics["customers"]["isRefreshing"]:
            # (The refresh writes its start time just after taking its lock.)
            assert len(started) == 1, "the refresh was never seen running with its start"
            return state
        # Invoices and revenue are computed by the same scan: their cards say so too.
        for name in ("customers", "invoices", "revenue"):
            assert metrics[name]["state"] == "refreshing", name
            assert metrics[name]["isRefreshing"] is True, name
            assert metrics[name]["refreshingSince"] == metrics["customers"]["refreshingSince"]
        if metrics["customers"]["refreshingSince"] is not None:
            assert ISO.match(metrics["customers"]["refreshingSince"])
            started.add(metrics["customers"]["refreshingSince"])
        assert metrics["jobs"]["state"] == metrics["quotes"]["state"] == "fresh"
        assert time.monotonic() < deadline, "the refresh did not finish"
        await asyncio.sleep(0.05)


async def test_forged_expired_and_foreign_sessions_are_refused(redis_url: str) -> None:
    async with _admin_app(redis_url) as client:
        cookies, _ = await _session(client)
        value = cookies["Cookie"].removeprefix(f"{COOKIE}=")
        expires, nonce, signature = value.split(".")
        flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
        later = str(int(expires) + 3600)
        _, expired = SessionCodec(ADMIN_TOKEN).issue(now=time.time() - 13 * 3600)
        _, other_token = SessionCodec("another-token").issue()
        for bad in (
            f"{expires}.{nonce}.{flipped}",  # tampered signature
            f"{later}.{nonce}.{signature}",  # extended expiry
            expired,
            other_token,  # signed with another ADMIN_TOKEN (a rotated one)
            ADMIN_TOKEN,  # the token itself is not a session
            "",
        ):
            response = await client.get("/admin/api/state", headers=_cookie(bad))
            assert response.status_code == 401, bad
            page = await client.get("/admin", headers=_cookie(bad))
            assert 'name="token"' in page.text
            assert "csrf-token" not in page.text
        # The genuine cookie still works.
        assert (await client.get("/admin/api/state", headers=cookies)).status_code == 200


async def test_logout_needs_csrf_and_ends_the_session(redis_url: str) -> None:
    async with _admin_app(redis_url) as client:
        cookies, csrf = await _session(client)
        same = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
        refused = await client.post("/admin/logout", headers={**same, **cookies})
        assert refused.status_code == 403
        foreign = await client.post(
            "/admin/logout",
            data={"csrf": csrf},
            headers={"Origin": "https://evil.example", **cookies},
        )
        assert foreign.status_code == 403
        assert (await client.get("/admin/api/state", headers=cookies)).status_code == 200

        response = await client.post(
            "/admin/logout", data={"csrf": csrf}, headers={**same, **cookies}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/admin"
        attributes = [attribute.lower() for attribute in _set_cookie(response)]
        assert f'{COOKIE}=""' in attributes
        assert "max-age=0" in attributes
        # A copy of the cookie kept elsewhere no longer works on this server either.
        assert (await client.get("/admin/api/state", headers=cookies)).status_code == 401


async def test_failed_logins_are_slowed_and_then_refused(redis_url: str) -> None:
    async with _admin_app(redis_url) as client:
        started = time.monotonic()
        wrong = await asyncio.gather(*(_login(client, f"guess-{i}") for i in range(10)))
        assert [response.status_code for response in wrong] == [401] * 10
        assert time.monotonic() - started >= 0.3  # each failure is delayed
        # Past the limit even the right token is refused, for a while.
        blocked = await _login(client)
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= 300
        assert "set-cookie" not in blocked.headers
        assert "Too many" in blocked.text


async def test_login_from_another_site_is_refused(redis_url: str) -> None:
    async with _admin_app(redis_url) as client:
        response = await client.post(
            "/admin/login", data={"token": ADMIN_TOKEN}, headers={"Origin": "https://evil.example"}
        )
        assert response.status_code == 403
        assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("admin.js", "text/javascript"), ("admin.css", "text/css")],
)
async def test_assets(redis_url: str, name: str, media_type: str) -> None:
    async with _admin_app(redis_url) as client:
        response = await client.get(f"/admin/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)
        _assert_secured(response)
        for missing in ("admin-login.html", "..%2Fadmin%2F__init__.py", "nope.js"):
            assert (await client.get(f"/admin/static/{missing}")).status_code == 404


def _svg(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    _assert_secured(response)
    return ET.fromstring(response.text)


async def test_growth_chart_needs_a_session(redis_url: str) -> None:
    async with _admin_app(redis_url) as client:
        for headers in ({}, _cookie("1.forged.cookie"), _cookie(ADMIN_TOKEN)):
            response = await client.get("/admin/api/growth.svg", headers=headers)
            assert response.status_code == 401
            assert set(response.json()) == {"error"}
            assert "<svg" not in response.text
            _assert_secured(response)
        cookies, _ = await _session(client)
        assert (await client.get("/admin/api/growth.svg", headers=cookies)).status_code == 200


async def test_growth_chart_has_a_bar_for_each_period_of_the_history(redis_url: str) -> None:
    simulator = _simulator()
    first_dates = simulator.dataset.first_invoice_dates()
    async with _admin_app(redis_url, simulator) as client:
        cookies, _ = await _session(client)
        counts: dict[str, int] = {}
        intervals: tuple[Interval, ...] = ("month", "quarter", "year")
        for interval in intervals:
            history = (
                await client.get(f"/api/simpro/customers/history?interval={interval}")
            ).json()["history"]
            root = _svg(
                await client.get(f"/admin/api/growth.svg?interval={interval}", headers=cookies)
            )
            assert root.get("data-interval") == interval
            bars = [el for el in root.iter(f"{SVG}rect") if el.get("class") == "new-bar"]
            assert len(bars) == len(history)
            counts[interval] = len(bars)
            # The same periods and numbers as the public history, which is the truth.
            truth = growth_history(first_dates, interval)
            assert [(p.period, p.new, p.cumulative) for p in truth] == [
                (row["period"], row["new"], row["cumulative"]) for row in history
            ]
            titles = [title.text for title in root.iter(f"{SVG}title")]
            assert titles == [
                f"{p.period}: {p.new:,} new, {p.cumulative:,} in total" for p in truth
            ]
            assert f"{truth[-1].cumulative:,} customers in total" in root.get("aria-label", "")
            assert truth[-1].cumulative == simulator.truth().customers
        # Five years of invoices: about 60 months, 20 quarters, 5 or 6 years.
        assert counts["month"] > counts["quarter"] > counts["year"] >= 5
        # No interval means months; an unknown one is refused.
        default = _svg(await client.get("/admin/api/growth.svg", headers=cookies))
        assert default.get("data-interval") == "month"
        bad = await client.get("/admin/api/growth.svg?interval=week", headers=cookies)
        assert bad.status_code == 400
        assert "interval" in bad.json()["error"]


async def test_growth_chart_is_unavailable_until_the_first_full_scan(redis_url: str) -> None:
    simulator = _simulator()
    simulator.latency.mean = 0.3  # the first scan takes a second or two
    settings = service_settings(redis_url)
    async with running_app(settings, simulator.transport()) as (_, client):
        cookies, _ = await _session(client)
        response = await client.get("/admin/api/growth.svg", headers=cookies)
        assert response.status_code == 503, response.text
        assert "first full scan" in response.json()["error"]
        assert response.headers["retry-after"] == "5"
        _assert_secured(response)
        simulator.latency.mean = 0.0
        await wait_for_count(client)
        root = _svg(await client.get("/admin/api/growth.svg", headers=cookies))
        bars = [el for el in root.iter(f"{SVG}rect") if el.get("class") == "new-bar"]
        assert len(bars) == len(growth_history(simulator.dataset.first_invoice_dates(), "month"))
