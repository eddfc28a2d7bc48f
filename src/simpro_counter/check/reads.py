"""The checks of what anyone may read: health, the counters, history, caching and CORS."""

from __future__ import annotations

from decimal import Decimal

import httpx

from simpro_counter.check.probe import (
    Body,
    CheckError,
    Probe,
    answer,
    json_object,
    parse,
    retry_after_seconds,
    short,
    status_line,
)
from simpro_counter.contract import CountAnswer, HistoryAnswer, MoneyAnswer, Readiness

CUSTOMERS = "/api/simpro/customers"
HISTORY = "/api/simpro/customers/history"
# The metrics besides customers; revenue answers `total` and `currency` for `count`.
OTHER_METRICS = ("invoices", "revenue", "jobs", "quotes")
MONEY_METRICS = frozenset({"revenue"})


class ReadChecks:
    """Each method is one check: its detail line, or :class:`CheckError` saying why not."""

    def __init__(self, probe: Probe, origin: str) -> None:
        self.probe = probe
        self.origin = origin
        # The first count's answer, whose caching headers the later checks use.
        self.count_response: httpx.Response | None = None
        self.etag: str | None = None

    async def healthz(self) -> str:
        response = await self.probe.request("GET", "/healthz")
        body = json_object(response, 200)
        if body != {"status": "ok"}:
            raise CheckError(f'expected {{"status": "ok"}}, got {short(response.text)}')
        return "alive"

    async def count(self) -> str:
        def ready(response: httpx.Response, body: Body) -> bool:
            if body.get("count") is not None:
                return True
            if "count" not in body:
                raise CheckError("field count: missing")
            if response.headers.get("Retry-After") is None:
                raise CheckError("count is null but the answer has no Retry-After header")
            return False

        polled = await self.probe.poll(
            CUSTOMERS,
            ready=ready,
            pause=lambda response: retry_after_seconds(response.headers["Retry-After"]),
            timed_out=lambda requests: (
                f"count still null after {self.probe.wait:.0f} s ({requests} requests): "
                "the first refresh has not finished; see GET /api/simpro/customers/refresh"
            ),
        )
        value = parse(CountAnswer, polled.body)
        if value.cached is not True:
            raise CheckError("field cached: expected true once a count exists, got false")
        self.count_response = polled.response
        waited = f", after {polled.waits} Retry-After wait(s)" if polled.waits else ""
        stale = ", stale" if value.stale else ""
        return f"count {value.count:,} from {value.source} (age {value.cache_age} s{stale}){waited}"

    async def other_metric(self, metric: str) -> str:
        field = "total" if metric in MONEY_METRICS else "count"

        def ready(response: httpx.Response, body: Body) -> bool:
            if field not in body:
                raise CheckError(f"field {field}: missing")
            return body[field] is not None

        polled = await self.probe.poll(
            f"/api/simpro/{metric}",
            ready=ready,
            pause=lambda response: retry_after_seconds(response.headers.get("Retry-After", "1")),
            timed_out=lambda requests: f"{field} still null after {self.probe.wait:.0f} s",
        )
        if metric in MONEY_METRICS:
            money = parse(MoneyAnswer, polled.body)
            return f"{Decimal(money.total):,.2f} {money.currency} from {money.source}"
        value = parse(CountAnswer, polled.body)
        return f"{value.count:,} {metric} from {value.source}"

    async def history(self) -> str:
        response = await self.probe.request("GET", f"{HISTORY}?interval=month")
        growth = answer(response, 200, HistoryAnswer)
        running = 0
        for point in growth.history:
            running += point.new
            if point.cumulative != running:
                raise CheckError(
                    f"period {point.period}: cumulative {point.cumulative} is not the "
                    f"sum of new customers so far ({running})"
                )
        if running != growth.total:
            raise CheckError(f"total {growth.total} is not the sum of new customers {running}")
        csv_answer = await self.probe.request("GET", f"{HISTORY}?interval=month&format=csv")
        if csv_answer.status_code != 200 or not csv_answer.headers.get(
            "content-type", ""
        ).startswith("text/csv"):
            raise CheckError(f"format=csv: expected 200 text/csv, got {status_line(csv_answer)}")
        first = growth.history[0].period if growth.history else "none"
        return f"{len(growth.history)} months from {first}, {growth.total:,} customers; CSV too"

    async def cache_headers(self) -> str:
        response = self.count_response
        if response is None:
            raise CheckError("not checked: GET /api/simpro/customers gave no count")
        missing = [name for name in ("ETag", "Cache-Control") if name not in response.headers]
        if missing:
            raise CheckError(f"header {' and '.join(missing)} missing")
        self.etag = response.headers["ETag"]
        return f"ETag {self.etag}, Cache-Control {response.headers['Cache-Control']}"

    async def revalidate(self) -> str:
        if self.etag is None:
            raise CheckError("not checked: no ETag to revalidate with")
        request = self.probe.request
        response = await request("GET", CUSTOMERS, headers={"If-None-Match": self.etag})
        if response.status_code == 200:
            # The value may have been republished between the two requests.
            new = response.headers.get("ETag")
            if new and new != self.etag:
                again = await request("GET", CUSTOMERS, headers={"If-None-Match": new})
                if again.status_code == 304:
                    return "304 Not Modified (after the value changed once)"
        if response.status_code != 304:
            raise CheckError(
                f"If-None-Match {self.etag}: expected 304, got {status_line(response)}"
            )
        return "304 Not Modified"

    async def cors(self) -> str:
        response = await self.probe.request("GET", CUSTOMERS, headers={"Origin": self.origin})
        allowed = response.headers.get("Access-Control-Allow-Origin")
        if allowed is None:
            raise CheckError(
                f"Origin {self.origin}: no Access-Control-Allow-Origin header "
                f"({response.status_code}); if CORS_ORIGINS lists only your sites, "
                "check with --origin set to one of them"
            )
        if allowed not in ("*", self.origin):
            raise CheckError(
                f"Origin {self.origin}: Access-Control-Allow-Origin is {allowed!r}, "
                "which browsers reject for this page"
            )
        return f"Origin {self.origin}: Access-Control-Allow-Origin: {allowed}"

    async def readyz(self) -> str:
        response = await self.probe.request("GET", "/readyz")
        if response.status_code not in (200, 503):
            raise CheckError(f"expected 200 or 503, got {status_line(response)}")
        ready = answer(response, response.status_code, Readiness)
        redis, simpro = ready.redis, ready.simpro
        parts = [
            "redis " + ("ok" if redis.ok else f"failing: {redis.error}"),
            "simpro " + ("ok" if simpro.ok else f"failing: {simpro.detail}"),
        ]
        where = f" (storage {redis.storage})" if redis.storage else ""
        if response.status_code == 503:
            raise CheckError(f"503 not ready: {', '.join(parts)}{where}")
        return f"ready: {', '.join(parts)}{where}"

    async def metrics(self) -> str:
        response = await self.probe.request("GET", "/metrics")
        if response.status_code != 200:
            raise CheckError(f"expected 200, got {status_line(response)}")
        if "simpro_counter_" not in response.text:
            raise CheckError("no simpro_counter_ metric in the answer")
        names = {
            line.split("{")[0].split(" ")[0]
            for line in response.text.splitlines()
            if line.startswith("simpro_counter_")
        }
        return f"{len(names)} simpro_counter_* samples"
