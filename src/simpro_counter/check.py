"""`simpro-counter check`: exercise every endpoint of a running deployment.

The successor of the original's PowerShell test script. Each check is one line of the
report; a check that cannot run (no answer, wrong status, wrong field) fails with the
reason, never with a traceback. The admin token is sent but never printed.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from rich.console import Console
from rich.text import Text

CUSTOMERS = "/api/simpro/customers"
REFRESH = "/api/simpro/customers/refresh"
HISTORY = "/api/simpro/customers/history"
# The metrics besides customers; revenue answers `total` and `currency` for `count`.
OTHER_METRICS = ("invoices", "revenue", "jobs", "quotes")
MONEY_METRICS = frozenset({"revenue"})
STORAGES = ("redis", "memory")
# The page origin the CORS check pretends to be (CORS_ORIGINS defaults to every site).
CORS_ORIGIN = "https://example.com"

# Seconds one ordinary request may take; a foreground refresh may take up to `wait`.
_TIMEOUT = 10.0
# Seconds between polls of the refresh status while a refresh runs.
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check; a skipped check counts as passed."""

    name: str
    ok: bool
    detail: str
    skipped: bool = False


class _CheckError(Exception):
    """Ends one check with a failure whose message is the detail shown."""


# -- field checks ---------------------------------------------------------------------------

Validator = Callable[[Any], bool]


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_iso(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_epoch_ms(value: object) -> bool:
    # Epoch seconds would be about 1.7e9; milliseconds about 1.7e12.
    return isinstance(value, int) and not isinstance(value, bool) and value > 100_000_000_000


def _is_decimal_string(value: object) -> bool:
    """A money amount as JSON must be a string such as "1234.50": a number could be a float."""
    if not isinstance(value, str):
        return False
    whole, _, cents = value.removeprefix("-").partition(".")
    return whole.isdigit() and len(cents) == 2 and cents.isdigit()


def _or_null(check: Validator) -> Validator:
    return lambda value: value is None or check(value)


_KINDS: dict[str, Validator] = {
    "int": _is_int,
    "int or null": _or_null(_is_int),
    "bool": lambda value: isinstance(value, bool),
    "str": lambda value: isinstance(value, str),
    "number": _is_number,
    "ISO string": _is_iso,
    "ISO string or null": _or_null(_is_iso),
    "int epoch ms": _is_epoch_ms,
    "int epoch ms or null": _or_null(_is_epoch_ms),
    '"redis" or "memory"': lambda value: value in STORAGES,
    "decimal string": _is_decimal_string,
    "ISO 4217 code": lambda value: isinstance(value, str) and len(value) == 3 and value.isupper(),
    "list": lambda value: isinstance(value, list),
}


def _field_problems(body: dict[str, Any], spec: dict[str, str]) -> list[str]:
    """One "field X: expected Y, got Z" per field of `spec` missing or of the wrong type."""
    problems = []
    for name, kind in spec.items():
        if name not in body:
            problems.append(f"field {name}: missing")
        elif not _KINDS[kind](body[name]):
            got = body[name]
            shown = repr(got) if isinstance(got, str) and kind.startswith('"') else _type_name(got)
            problems.append(f"field {name}: expected {kind}, got {shown}")
    return problems


def _require_fields(body: dict[str, Any], spec: dict[str, str]) -> None:
    problems = _field_problems(body, spec)
    if problems:
        raise _CheckError("; ".join(problems))


COUNT_FIELDS = {
    "count": "int",
    "cached": "bool",
    "cacheAge": "int",
    "source": '"redis" or "memory"',
    "lastUpdated": "int epoch ms",
}
STATUS_FIELDS = {
    "count": "int or null",
    "lastUpdated": "ISO string or null",
    "ttl": "int",
    "nextRefresh": "ISO string or null",
    "isRefreshing": "bool",
    "storage": '"redis" or "memory"',
}
MONEY_FIELDS = {
    **{k: v for k, v in COUNT_FIELDS.items() if k != "count"},
    "total": "decimal string",
    "currency": "ISO 4217 code",
}
HISTORY_FIELDS = {"interval": "str", "history": "list", "total": "int", "undated": "int"}
INIT_FIELDS = {"success": "bool", "message": "str", "timestamp": "ISO string"}
REFRESHED_FIELDS = {
    "success": "bool",
    "count": "int",
    "totalInvoices": "int",
    "duration": "number",
    "ttl": "int",
    "nextRefresh": "ISO string",
    "storage": '"redis" or "memory"',
}


# -- the checks -----------------------------------------------------------------------------


class _Checker:
    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        token: str | None,
        wait: float,
        origin: str,
    ) -> None:
        self.client = client
        self.base = base_url.rstrip("/")
        self.token = token
        self.wait = wait
        self.origin = origin
        self.results: list[CheckResult] = []
        self.etag: str | None = None
        self.count_response: httpx.Response | None = None

    # Helpers -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        seconds: float = _TIMEOUT,
        timeout_hint: str = "",
    ) -> httpx.Response:
        try:
            return await self.client.request(
                method,
                self.base + path,
                headers=headers,
                params=params,
                timeout=seconds,
            )
        except httpx.TimeoutException:
            raise _CheckError(
                f"{method} {path}: no answer within {seconds:.0f} s{timeout_hint}"
            ) from None
        except httpx.ConnectError as exc:
            reason = str(exc) or type(exc).__name__
            raise _CheckError(f"cannot connect to {self.base}: {reason}") from None
        except httpx.HTTPError as exc:
            # The message names the URL at most; headers (and so the token) never appear.
            reason = str(exc) or type(exc).__name__
            raise _CheckError(f"{method} {path} failed: {reason}") from None

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def run(self, name: str, check: Callable[[], Awaitable[str]]) -> None:
        """Run one check and record its result: its detail, or why it failed."""
        try:
            ok, detail = True, await check()
        except _CheckError as exc:
            ok, detail = False, str(exc)
        except Exception as exc:  # a bug in a check must not hide the other checks
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.results.append(CheckResult(name, ok, self.scrub(detail)))

    def scrub(self, text: str) -> str:
        """Belt and braces: a detail never shows the token, whatever the server echoed."""
        if self.token:
            text = text.replace(self.token, "***")
        return text

    def skip(self, name: str, why: str) -> None:
        self.results.append(CheckResult(name, True, f"skipped: {why}", skipped=True))

    # Checks -----------------------------------------------------------------------------

    async def healthz(self) -> str:
        response = await self.request("GET", "/healthz")
        body = _json(response, 200)
        if body != {"status": "ok"}:
            raise _CheckError(f'expected {{"status": "ok"}}, got {_short(response.text)}')
        return "alive"

    async def count(self) -> str:
        deadline = time.monotonic() + self.wait
        polls = 0
        while True:
            response = await self.request("GET", CUSTOMERS)
            body = _json(response, 200)
            if body.get("count") is not None:
                break
            if "count" not in body:
                raise _CheckError("field count: missing")
            retry_after = response.headers.get("Retry-After")
            if retry_after is None:
                raise _CheckError("count is null but the answer has no Retry-After header")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _CheckError(
                    f"count still null after {self.wait:.0f} s ({polls + 1} requests): "
                    "the first refresh has not finished; see GET /api/simpro/customers/refresh"
                )
            polls += 1
            await asyncio.sleep(min(_retry_after_seconds(retry_after), remaining))
        _require_fields(body, COUNT_FIELDS)
        if body["cached"] is not True:
            raise _CheckError("field cached: expected true once a count exists, got false")
        self.count_response = response
        waited = f", after {polls} Retry-After wait(s)" if polls else ""
        stale = ", stale" if body.get("stale") else ""
        return (
            f"count {body['count']:,} from {body['source']} "
            f"(age {body['cacheAge']} s{stale}){waited}"
        )

    async def other_metric(self, metric: str) -> str:
        path = f"/api/simpro/{metric}"
        field = "total" if metric in MONEY_METRICS else "count"
        deadline = time.monotonic() + self.wait
        while True:
            response = await self.request("GET", path)
            body = _json(response, 200)
            if field not in body:
                raise _CheckError(f"field {field}: missing")
            if body[field] is not None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _CheckError(f"{field} still null after {self.wait:.0f} s")
            retry_after = response.headers.get("Retry-After", "1")
            await asyncio.sleep(min(_retry_after_seconds(retry_after), remaining))
        _require_fields(body, MONEY_FIELDS if metric in MONEY_METRICS else COUNT_FIELDS)
        if metric in MONEY_METRICS:
            return f"{Decimal(body['total']):,.2f} {body['currency']} from {body['source']}"
        return f"{body['count']:,} {metric} from {body['source']}"

    async def history(self) -> str:
        response = await self.request("GET", f"{HISTORY}?interval=month")
        body = _json(response, 200)
        _require_fields(body, HISTORY_FIELDS)
        points = body["history"]
        running = 0
        for point in points:
            running += point["new"]
            if point["cumulative"] != running:
                raise _CheckError(
                    f"period {point['period']}: cumulative {point['cumulative']} is not the "
                    f"sum of new customers so far ({running})"
                )
        if running != body["total"]:
            raise _CheckError(f"total {body['total']} is not the sum of new customers {running}")
        csv_answer = await self.request("GET", f"{HISTORY}?interval=month&format=csv")
        if csv_answer.status_code != 200 or not csv_answer.headers.get(
            "content-type", ""
        ).startswith("text/csv"):
            raise _CheckError(f"format=csv: expected 200 text/csv, got {_status(csv_answer)}")
        first = points[0]["period"] if points else "none"
        return f"{len(points)} months from {first}, {body['total']:,} customers; CSV too"

    async def cache_headers(self) -> str:
        response = self.count_response
        if response is None:
            raise _CheckError("not checked: GET /api/simpro/customers gave no count")
        missing = [name for name in ("ETag", "Cache-Control") if name not in response.headers]
        if missing:
            raise _CheckError(f"header {' and '.join(missing)} missing")
        self.etag = response.headers["ETag"]
        return f"ETag {self.etag}, Cache-Control {response.headers['Cache-Control']}"

    async def revalidate(self) -> str:
        if self.etag is None:
            raise _CheckError("not checked: no ETag to revalidate with")
        response = await self.request("GET", CUSTOMERS, headers={"If-None-Match": self.etag})
        if response.status_code == 200:
            # The value may have been republished between the two requests.
            new = response.headers.get("ETag")
            if new and new != self.etag:
                again = await self.request("GET", CUSTOMERS, headers={"If-None-Match": new})
                if again.status_code == 304:
                    return "304 Not Modified (after the value changed once)"
        if response.status_code != 304:
            raise _CheckError(f"If-None-Match {self.etag}: expected 304, got {_status(response)}")
        return "304 Not Modified"

    async def cors(self) -> str:
        response = await self.request("GET", CUSTOMERS, headers={"Origin": self.origin})
        allowed = response.headers.get("Access-Control-Allow-Origin")
        if allowed is None:
            raise _CheckError(
                f"Origin {self.origin}: no Access-Control-Allow-Origin header "
                f"({response.status_code}); if CORS_ORIGINS lists only your sites, "
                "check with --origin set to one of them"
            )
        if allowed not in ("*", self.origin):
            raise _CheckError(
                f"Origin {self.origin}: Access-Control-Allow-Origin is {allowed!r}, "
                "which browsers reject for this page"
            )
        return f"Origin {self.origin}: Access-Control-Allow-Origin: {allowed}"

    async def status(self) -> str:
        response = await self.request("GET", REFRESH)
        body = _json(response, 200)
        _require_fields(body, STATUS_FIELDS)
        count = "none yet" if body["count"] is None else f"{body['count']:,}"
        refreshing = ", refreshing now" if body["isRefreshing"] else ""
        return f"count {count}, ttl {body['ttl']} s, storage {body['storage']}{refreshing}"

    async def init(self) -> str:
        response = await self.request("GET", "/api/init")
        body = _json(response, 200)
        _require_fields(body, INIT_FIELDS)
        if body["success"] is not True:
            raise _CheckError("field success: expected true, got false")
        if body["message"] != "Initialization completed":
            raise _CheckError(
                f"field message: expected 'Initialization completed', got {body['message']!r}"
            )
        return str(body["message"])

    async def post_without_token(self) -> str:
        # background=true: should the server wrongly accept it, it does not scan in our face.
        response = await self.request("POST", REFRESH, params={"background": "true"})
        if response.status_code == 401:
            return "401: refused (ADMIN_TOKEN is set on the server)"
        if response.status_code == 403:
            return (
                "403: ADMIN_TOKEN is not set on the server, so this deployment cannot be "
                "refreshed over HTTP (the scheduler still refreshes stale values)"
            )
        raise _CheckError(
            f"expected 401 or 403, got {_status(response)}: anyone can trigger a refresh "
            "(demo mode from this machine?)"
        )

    async def post_wrong_token(self) -> str:
        wrong = "wrong-" + secrets.token_hex(8)
        response = await self.request(
            "POST", REFRESH, headers=self.auth(wrong), params={"background": "true"}
        )
        if response.status_code == 401:
            return "401: a wrong token is refused"
        if response.status_code == 403:
            return "403: no ADMIN_TOKEN on the server, so no token is accepted"
        raise _CheckError(f"expected 401, got {_status(response)}: a wrong token was accepted")

    async def background_refresh(self, token: str) -> str:
        response = await self.request(
            "POST", REFRESH, headers=self.auth(token), params={"background": "true"}
        )
        _refused(response)
        if response.status_code == 409:
            started = "409: a refresh was already running; waited for it"
        elif response.status_code == 202:
            if _json(response, 202).get("success") is not True:
                raise _CheckError("202 but field success is not true")
            started = "202 Accepted"
        else:
            raise _CheckError(f"expected 202 (or 409), got {_status(response)}")
        body = await self.wait_for_refresh()
        problems = _field_problems(body, {"count": "int"})
        if problems:
            raise _CheckError(f"after the refresh: {'; '.join(problems)}")
        error = _latest_error(body)
        if error is not None:
            raise _CheckError(f"the refresh failed: lastError {error!r}")
        earlier = " (lastError still shows an earlier failure)" if body.get("lastError") else ""
        return f"{started}; the refresh finished with count {body['count']:,}{earlier}"

    async def wait_for_refresh(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.wait
        while True:
            body = _json(await self.request("GET", REFRESH), 200)
            if body.get("isRefreshing") is False:
                return body
            if body.get("isRefreshing") is not True:
                raise _CheckError(
                    f"field isRefreshing: expected bool, got {body.get('isRefreshing')}"
                )
            if time.monotonic() > deadline:
                raise _CheckError(f"still refreshing after {self.wait:.0f} s")
            await asyncio.sleep(_POLL_SECONDS)

    async def foreground_refresh(self, token: str) -> str:
        response = await self.request(
            "POST",
            REFRESH,
            headers=self.auth(token),
            seconds=max(self.wait, _TIMEOUT),
            timeout_hint=" (a full scan of a large build can take longer: raise --wait)",
        )
        _refused(response)
        if response.status_code == 409:
            return "409: another refresh is running (not an error; try again later)"
        if response.status_code == 502:
            error = _json(response, 502).get("error")
            raise _CheckError(f"502: the refresh failed (Simpro): {error}")
        body = _json(response, 200)
        _require_fields(body, REFRESHED_FIELDS)
        if body["success"] is not True:
            raise _CheckError("field success: expected true, got false")
        return (
            f"count {body['count']:,} from {body['totalInvoices']:,} invoices "
            f"in {body['duration']} s, storage {body['storage']}"
        )

    async def readyz(self) -> str:
        response = await self.request("GET", "/readyz")
        if response.status_code not in (200, 503):
            raise _CheckError(f"expected 200 or 503, got {_status(response)}")
        body = _json(response, response.status_code)
        redis = _part(body, "redis")
        simpro = _part(body, "simpro")
        parts = [
            "redis " + ("ok" if redis.get("ok") else f"failing: {redis.get('error')}"),
            "simpro " + ("ok" if simpro.get("ok") else f"failing: {simpro.get('detail')}"),
        ]
        where = f" (storage {redis.get('storage')})" if redis.get("storage") else ""
        if response.status_code == 503:
            raise _CheckError(f"503 not ready: {', '.join(parts)}{where}")
        return f"ready: {', '.join(parts)}{where}"

    async def metrics(self) -> str:
        response = await self.request("GET", "/metrics")
        if response.status_code != 200:
            raise _CheckError(f"expected 200, got {_status(response)}")
        if "simpro_counter_" not in response.text:
            raise _CheckError("no simpro_counter_ metric in the answer")
        names = {
            line.split("{")[0].split(" ")[0]
            for line in response.text.splitlines()
            if line.startswith("simpro_counter_")
        }
        return f"{len(names)} simpro_counter_* samples"


def _json(response: httpx.Response, expected: int) -> dict[str, Any]:
    """The JSON object of an answer that must have status `expected`."""
    if response.status_code != expected:
        raise _CheckError(f"expected {expected}, got {_status(response)}")
    try:
        body = response.json()
    except ValueError:
        raise _CheckError(f"not JSON: {_short(response.text)}") from None
    if not isinstance(body, dict):
        raise _CheckError(f"expected a JSON object, got {_short(response.text)}")
    return body


def _part(body: dict[str, Any], name: str) -> dict[str, Any]:
    part = body.get(name)
    return part if isinstance(part, dict) else {}


def _refused(response: httpx.Response) -> None:
    if response.status_code == 401:
        raise _CheckError("401: the token was refused (is it the server's ADMIN_TOKEN?)")
    if response.status_code == 403:
        raise _CheckError(
            "403: ADMIN_TOKEN is not set on the server, so refreshing over HTTP is off"
        )


def _latest_error(status: dict[str, Any]) -> str | None:
    """`lastError` if the latest refresh failed; an error older than the last success is not."""
    error = status.get("lastError")
    if error is None:
        return None
    failed_at, succeeded_at = status.get("lastErrorAt"), status.get("lastSuccessAt")
    if _is_iso(failed_at) and _is_iso(succeeded_at) and str(failed_at) < str(succeeded_at):
        return None
    return str(error)


def _status(response: httpx.Response) -> str:
    text = f"{response.status_code} {response.reason_phrase}".strip()
    body = _short(response.text)
    return f"{text} ({body})" if body else text


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after_seconds(header: str) -> float:
    try:
        return max(0.1, float(header))
    except ValueError:
        return 1.0  # an HTTP date or garbage: ask again soon


async def run_checks(
    base_url: str,
    token: str | None,
    *,
    client: httpx.AsyncClient | None = None,
    wait: float = 60.0,
    origin: str = CORS_ORIGIN,
) -> list[CheckResult]:
    """Check every endpoint of the deployment at `base_url`; one result per check.

    Without `token`, the checks that need the admin token are skipped (counted as passed).
    `wait` bounds each wait for a value or for a running refresh to finish; `origin` is
    the page origin the CORS check sends.
    """
    if client is None:
        async with httpx.AsyncClient(follow_redirects=False) as own:
            return await run_checks(base_url, token, client=own, wait=wait, origin=origin)
    checker = _Checker(client, base_url, token, wait, origin)
    await checker.run("GET /healthz", checker.healthz)
    await checker.run(f"GET {CUSTOMERS}", checker.count)
    for metric in OTHER_METRICS:
        await checker.run(
            f"GET /api/simpro/{metric}", functools.partial(checker.other_metric, metric)
        )
    await checker.run(f"GET {HISTORY}", checker.history)
    await checker.run("Cache headers", checker.cache_headers)
    await checker.run("If-None-Match → 304", checker.revalidate)
    await checker.run("CORS", checker.cors)
    await checker.run(f"GET {REFRESH}", checker.status)
    await checker.run("GET /api/init", checker.init)
    await checker.run(f"POST {REFRESH} without a token", checker.post_without_token)
    await checker.run(f"POST {REFRESH} with a wrong token", checker.post_wrong_token)
    background = f"POST {REFRESH}?background=true"
    foreground = f"POST {REFRESH}"
    if token:
        await checker.run(background, lambda: checker.background_refresh(token))
        await checker.run(foreground, lambda: checker.foreground_refresh(token))
    else:
        checker.skip(background, "no --token given")
        checker.skip(foreground, "no --token given")
    await checker.run("GET /readyz", checker.readyz)
    await checker.run("GET /metrics", checker.metrics)
    return checker.results


def all_passed(results: list[CheckResult]) -> bool:
    return all(result.ok for result in results)


def render(results: list[CheckResult], console: Console) -> None:
    """One ✓/✗ line per check with its detail, then the totals."""
    for result in results:
        line = Text()
        if result.skipped:
            line.append("○ ", style="yellow")
        elif result.ok:
            line.append("✓ ", style="green")
        else:
            line.append("✗ ", style="bold red")
        line.append(result.name, style="bold")
        line.append(": ")
        line.append(result.detail, style="dim" if result.skipped else "")
        console.print(line, soft_wrap=True)
    passed = sum(1 for r in results if r.ok and not r.skipped)
    failed = sum(1 for r in results if not r.ok)
    skipped = sum(1 for r in results if r.skipped)
    summary = Text(f"{passed} passed, {failed} failed", style="bold green" if not failed else "")
    if failed:
        summary.stylize("bold red")
    if skipped:
        summary.append(f", {skipped} skipped")
    console.print(summary)


def check_deployment(
    base_url: str,
    token: str | None,
    *,
    console: Console,
    wait: float = 60.0,
    origin: str = CORS_ORIGIN,
) -> int:
    """Run every check, print the report; the exit code: 0 when all passed, else 1."""
    results = asyncio.run(run_checks(base_url, token, wait=wait, origin=origin))
    render(results, console)
    return 0 if all_passed(results) else 1
