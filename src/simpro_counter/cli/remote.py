"""Commands that read a running service over HTTP: `status`, `history` and `check`."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table

from simpro_counter.cli.common import console, err_console

# The admin token from a file (or ADMIN_TOKEN in the environment), never from argv.
TokenFile = Annotated[
    Path | None,
    typer.Option(
        help="File holding the service's ADMIN_TOKEN (mode 600); default: ADMIN_TOKEN from "
        "the environment. Never pass the token itself.",
    ),
]


def _admin_token(token_file: Path | None) -> str | None:
    from simpro_counter.cli.secret_files import secret_or_exit
    from simpro_counter.settings import CommandSecrets

    return secret_or_exit(token_file, CommandSecrets().admin_token, "ADMIN_TOKEN")


def status(
    url: Annotated[str, typer.Option(help="Base URL of a running service.")] = (
        "http://127.0.0.1:8000"
    ),
    token_file: TokenFile = None,
) -> None:
    """Show every metric's cached value and refresh status on a running service.

    With the admin token (ADMIN_TOKEN or --token-file) the errors themselves and where the
    service's Redis is are shown; without it, what the public sees.
    """
    from simpro_counter.metrics import METRICS

    base = url.rstrip("/")
    token = _admin_token(token_file)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    table = Table(box=None, pad_edge=False)
    for column in ("Metric", "Value", "Last updated", "Stale", "Refreshing", "Last error"):
        table.add_column(column)
    for metric in METRICS:
        try:
            response = httpx.get(f"{base}/api/simpro/{metric}/refresh", headers=headers, timeout=10)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            err_console.print(f"[red]Error:[/] could not read {url}: {exc}", soft_wrap=True)
            raise typer.Exit(1) from None
        if "total" in body:
            total = body["total"]
            shown = (
                "[yellow]not computed yet"
                if total is None
                else f"{Decimal(total):,.2f} {body['currency']}"
            )
        else:
            count = body.get("count")
            shown = "[yellow]not computed yet" if count is None else f"{count:,}"
        table.add_row(
            f"[bold]{metric}",
            shown,
            str(body.get("lastUpdated")),
            str(body.get("stale")),
            str(body.get("isRefreshing")),
            str(body.get("lastError") or "none"),
        )
    console.print(table)
    console.print(f"Storage: {body.get('storage')}")
    console.print(f"Redis: {_redis_location(base, headers)}")


def _redis_location(base: str, headers: dict[str, str]) -> str:
    """Where the service's Redis is and its topology, as `/readyz` says to the token
    (never a password; answered with 503 too while Redis or Simpro is down)."""
    if not headers:
        return "not shown without the admin token (ADMIN_TOKEN or --token-file)"
    try:
        readyz = httpx.get(f"{base}/readyz", headers=headers, timeout=10)
        location = readyz.json()["redis"]["location"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return "unknown (/readyz did not answer)"
    return str(location)


def history(
    url: Annotated[str, typer.Option(help="Base URL of a running service.")] = (
        "http://127.0.0.1:8000"
    ),
    interval: Annotated[str, typer.Option(help="Period length: month, quarter or year.")] = "month",
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print CSV (period,new,cumulative) instead of a table.")
    ] = False,
) -> None:
    """Show customer growth per period (new customers by their first invoice, running total)."""
    base = url.rstrip("/")
    params = {"interval": interval, **({"format": "csv"} if as_csv else {})}
    try:
        response = httpx.get(f"{base}/api/simpro/customers/history", params=params, timeout=30)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]Error:[/] could not read {url}: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    if response.status_code != 200:
        try:
            answer = response.json()
            reason = (
                answer.get("error") or answer.get("detail") if isinstance(answer, dict) else None
            )
        except ValueError:
            reason = None
        reason = reason or response.text[:200] or "no explanation in the answer"
        if response.status_code == 404:
            reason = f"{reason} (is {url} a simpro-counter service?)"
        err_console.print(f"[red]Error:[/] {response.status_code}: {reason}", soft_wrap=True)
        raise typer.Exit(1)
    if as_csv:
        sys.stdout.write(response.text)
        return
    body = response.json()
    points = body["history"]
    widest = max((point["new"] for point in points), default=0)
    table = Table(box=None, pad_edge=False)
    table.add_column("Period")
    table.add_column("New", justify="right")
    table.add_column("Total", justify="right")
    table.add_column("")
    for point in points:
        bar = "█" * round(30 * point["new"] / widest) if widest else ""
        table.add_row(point["period"], f"{point['new']:,}", f"{point['cumulative']:,}", bar)
    console.print(table)
    undated = f" ({body['undated']:,} without a dated invoice)" if body["undated"] else ""
    console.print(f"{body['total']:,} customers over {len(points):,} {interval}s{undated}")


def check(
    url: Annotated[str, typer.Option(help="Base URL of the running service.")] = (
        "http://127.0.0.1:8000"
    ),
    token_file: TokenFile = None,
    origin: Annotated[
        str, typer.Option(help="Page origin for the CORS check (one of CORS_ORIGINS).")
    ] = "https://example.com",
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for a first value or a running refresh.")
    ] = 60.0,
) -> None:
    """Check every endpoint of a running deployment; exit code 1 if any check fails.

    The admin checks need the token: set ADMIN_TOKEN in the environment or pass
    --token-file; without either they are skipped.
    """
    from simpro_counter.check import check_deployment

    token = _admin_token(token_file)
    raise typer.Exit(check_deployment(url, token, console=console, wait=wait, origin=origin))
