"""`simpro-counter check`: exercise every endpoint of a running deployment.

The successor of the original's PowerShell test script. Each check is one line of the
report; a check that cannot run (no answer, wrong status, wrong field) fails with the
reason, never with a traceback. The admin token is sent but never printed.

The answers are read as the models of `simpro_counter.contract`, the same ones the
service documents in its OpenAPI description. `probe.py` sends the requests and polls,
`reads.py` and `refresh.py` hold the checks, `report.py` prints them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import httpx
from rich.console import Console

from simpro_counter.check.probe import CheckError, Probe
from simpro_counter.check.reads import CUSTOMERS, HISTORY, OTHER_METRICS, ReadChecks
from simpro_counter.check.refresh import REFRESH, RefreshChecks
from simpro_counter.check.report import CheckResult, all_passed, render

__all__ = ["CORS_ORIGIN", "CheckResult", "all_passed", "check_deployment", "render", "run_checks"]

# The page origin the CORS check pretends to be (CORS_ORIGINS defaults to every site).
CORS_ORIGIN = "https://example.com"


class _Results:
    """The results so far; a check's detail never shows the token."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.results: list[CheckResult] = []

    async def run(self, name: str, check: Callable[[], Awaitable[str]]) -> None:
        """Run one check and record its result: its detail, or why it failed."""
        try:
            ok, detail = True, await check()
        except CheckError as exc:
            ok, detail = False, str(exc)
        except Exception as exc:  # a bug in a check must not hide the other checks
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.results.append(CheckResult(name, ok, self._scrub(detail)))

    def skip(self, name: str, why: str) -> None:
        self.results.append(CheckResult(name, True, f"skipped: {why}", skipped=True))

    def _scrub(self, text: str) -> str:
        # Belt and braces: whatever the server echoed, the token is not shown.
        return text.replace(self.token, "***") if self.token else text


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
    probe = Probe(client, base_url, wait)
    reads, refresh = ReadChecks(probe, origin), RefreshChecks(probe)
    results = _Results(token)
    await results.run("GET /healthz", reads.healthz)
    await results.run(f"GET {CUSTOMERS}", reads.count)
    for metric in OTHER_METRICS:
        check = functools.partial(reads.other_metric, metric)
        await results.run(f"GET /api/simpro/{metric}", check)
    await results.run(f"GET {HISTORY}", reads.history)
    await results.run("Cache headers", reads.cache_headers)
    await results.run("If-None-Match → 304", reads.revalidate)
    await results.run("CORS", reads.cors)
    await results.run(f"GET {REFRESH}", refresh.status)
    await results.run("GET /api/init", refresh.init)
    await results.run(f"POST {REFRESH} without a token", refresh.post_without_token)
    await results.run(f"POST {REFRESH} with a wrong token", refresh.post_wrong_token)
    background = f"POST {REFRESH}?background=true"
    foreground = f"POST {REFRESH}"
    if token:
        await results.run(background, lambda: refresh.background_refresh(token))
        await results.run(foreground, lambda: refresh.foreground_refresh(token))
    else:
        results.skip(background, "no ADMIN_TOKEN or --token-file given")
        results.skip(foreground, "no ADMIN_TOKEN or --token-file given")
    await results.run("GET /readyz", reads.readyz)
    await results.run("GET /metrics", reads.metrics)
    return results.results


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
