"""The `simpro-counter` command: a thin Typer layer over the library."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import httpx
import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from simpro_counter.errors import ConfigError, SimproCounterError
from simpro_counter.progress import ScanProgress
from simpro_counter.settings import Settings, load_settings, simpro_config
from simpro_counter.webhooks.subscriptions import COUNTED_EVENTS

if TYPE_CHECKING:
    from simpro_counter.simulator import Simulator

app = typer.Typer(
    help="Exact, instant counters (unique customers, ...) from a Simpro build.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def main() -> None:
    """Console-script entry point."""
    # stamina logs every retry at WARNING; the scan counts retries itself and shows them.
    logging.getLogger("stamina").setLevel(logging.ERROR)
    app()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn the package's own errors into one line and an exit code."""
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        err_console.print(f"[red]Configuration error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except SimproCounterError as exc:
        err_console.print(f"[red]Error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted; nothing was published.[/]")
        raise typer.Exit(130) from None


async def _refresh_into_store(settings: Settings, *, show_progress: bool) -> dict[str, Any]:
    """One refresh through the same lock and store the service uses; its report."""
    from simpro_counter.keys import Keys
    from simpro_counter.metrics import format_value
    from simpro_counter.refresh import Refresher
    from simpro_counter.store import ResilientStore
    from simpro_counter.store.ledger import InvoiceLedgerStore
    from simpro_counter.store.locate import open_redis

    async with (
        open_redis(settings) as (redis_client, where),
        ResilientStore(redis_client, Keys(settings.key_prefix)) as store,
    ):
        refresher = Refresher.from_settings(
            settings, store, InvoiceLedgerStore(redis_client, Keys(settings.key_prefix))
        )
        if show_progress:
            with ScanProgress(err_console) as progress:
                values = await refresher.refresh_all(observer=progress)
        else:
            values = await refresher.refresh_all()
        customers = values["customers"]
        return {
            "count": customers.value,
            **customers.details,
            "invoices": values["invoices"].value,
            "revenue": format_value("revenue", values["revenue"].value),
            "currency": refresher.currency,
            "storage": store.storage,
            "redis": where,
        }


def _print_report(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("[bold]Unique customers", f"[bold green]{report['count']:,}")
    table.add_row("Invoices counted", f"{report['invoices']:,} of {report['totalInvoices']:,}")
    table.add_row("Revenue (ex tax)", f"{Decimal(report['revenue']):,.2f} {report['currency']}")
    table.add_row("Invoices without a customer", f"{report['invoicesWithoutCustomer']:,}")
    table.add_row("Pages", f"{report['pages']:,}")
    table.add_row("Requests", f"{report['requests']:,} ({report['retries']:,} retries)")
    table.add_row("Re-read after changes", f"{report['reconciled']:,}")
    table.add_row("Duration", f"{report['duration']:.1f} s")
    table.add_row("Published to", f"{report['storage']} ({report['redis']})")
    console.print(table)


@app.command()
def refresh(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Scan every invoice now, publish the exact count to the store, and print it."""

    async def go() -> dict[str, Any]:
        settings = load_settings()
        return await _refresh_into_store(
            settings, show_progress=not as_json and err_console.is_terminal
        )

    _print_report(_run(go()), as_json=as_json)


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8089,
    invoices: Annotated[int, typer.Option(help="Invoices in the dataset.")] = 5000,
    customers: Annotated[int, typer.Option(help="Customers in the dataset.")] = 600,
    seed: Annotated[int, typer.Option(help="Seed of the dataset and faults.")] = 1,
    rate: Annotated[float, typer.Option(help="Requests/second before 429 (0: none).")] = 10.0,
    limiter: Annotated[
        Literal["bucket", "sliding"],
        typer.Option(help="How the rate is counted: a token bucket or a sliding second."),
    ] = "bucket",
    latency: Annotated[float, typer.Option(help="Seconds added to every answer.")] = 0.0,
    fault_rate: Annotated[float, typer.Option(help="Share of requests that fail.")] = 0.0,
    api_key: Annotated[str, typer.Option(help="API key the simulator accepts.")] = "demo-key",
) -> None:
    """Run the built-in Simpro simulator (a fake build with known ground truth)."""
    from simpro_counter.simulator import SimulatorConfig, serve

    serve(
        SimulatorConfig(
            invoices=invoices,
            customers=customers,
            seed=seed,
            rate=rate,
            limiter=limiter,
            latency=latency,
            fault_rate=fault_rate,
            api_key=api_key,
        ),
        host,
        port,
    )


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface (default: HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT or 8000).")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Run the service: the counters API over Redis, refreshed in the background."""
    settings = _settings_or_exit()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    _serve(settings.model_copy(update=overrides), access_log=access_log)


def _settings_or_exit() -> Settings:
    try:
        settings = load_settings()
        simpro_config(settings)
    except ConfigError as exc:
        err_console.print(f"[red]Configuration error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return settings


def _serve(settings: Settings, *, access_log: bool) -> None:
    import uvicorn

    from simpro_counter.web import create_app

    configure_logging()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=access_log,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


def configure_logging() -> None:
    """Plain, scannable log lines on stderr."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("stamina").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the service.")] = 8000,
    simulator_port: Annotated[int, typer.Option(help="Port of the simulator (0: any).")] = 0,
    invoices: Annotated[int, typer.Option(help="Invoices in the simulated build.")] = 5000,
    customers: Annotated[int, typer.Option(help="Customers in the simulated build.")] = 600,
    latency: Annotated[float, typer.Option(help="Simulated seconds per answer.")] = 0.2,
    fault_rate: Annotated[float, typer.Option(help="Share of simulated failures.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the simulated data.")] = 7,
    data_dir: Annotated[Path, typer.Option(help="Where the embedded Redis keeps its files.")] = (
        Path(".simpro-counter/demo")
    ),
    activity: Annotated[
        float,
        typer.Option(help="Seconds between new simulated invoices, sent as webhooks (0: none)."),
    ] = 8.0,
) -> None:
    """Try the product without Simpro: simulator + embedded Redis + the service."""
    from simpro_counter.simulator import SimulatorConfig, running_simulator

    # ADMIN_TOKEN from the environment, else a fresh one for this run: printed below, so
    # `check` and the refresh button can be tried exactly as in production.
    token = os.environ.get("ADMIN_TOKEN") or secrets.token_urlsafe(18)
    webhook_secret = secrets.token_urlsafe(18)
    sim_config = SimulatorConfig(
        invoices=invoices,
        customers=customers,
        seed=seed,
        latency=latency,
        fault_rate=fault_rate,
        slow_seconds=3.0,
        webhook_url=f"http://127.0.0.1:{port}/api/simpro/webhooks",
        webhook_secret=webhook_secret,
    )
    with (
        _fresh_embedded_redis(data_dir) as redis_url,
        running_simulator(sim_config, port=simulator_port) as running,
        _business_activity(running.simulator, every=activity),
    ):
        settings = Settings(
            simpro_base_url=running.url,
            simpro_api_key=sim_config.api_key,
            simpro_timeout=2.0,
            data_dir=data_dir,
            redis_url=redis_url,
            admin_token=SecretStr(token),
            webhook_secret=SecretStr(webhook_secret),
            demo=True,
            port=port,
        )
        base = f"http://{settings.host}:{settings.port}"
        console.print(
            f"[bold]simpro-counter demo[/]\n"
            f"  Homepage    {base}/\n"
            f"  Admin       {base}/admin (token below)\n"
            f"  Counter     {base}/api/simpro/customers (also invoices, revenue, jobs, quotes)\n"
            f"  Growth      {base}/api/simpro/customers/history?interval=month\n"
            f"  Status      {base}/api/simpro/customers/refresh\n"
            f"  API docs    {base}/docs\n"
            f"  Simulator   {running.url} ({invoices:,} invoices, {fault_rate:.0%} faults; "
            f"truth at {running.url}/__truth)\n"
            f"  Refresh     curl -X POST -H 'Authorization: Bearer {token}' "
            f"{base}/api/simpro/customers/refresh\n"
            f"  Check       simpro-counter check --url {base} --token {token}\n"
            + (
                f"  Live        a new invoice every {activity:g} s (and a job every third), "
                "as signed webhooks\n"
                if activity > 0
                else ""
            )
            + "Press Ctrl-C to stop.",
            highlight=False,
            soft_wrap=True,  # never break a command line in two, even into a file
        )
        _serve(settings, access_log=False)


@contextmanager
def _fresh_embedded_redis(data_dir: Path) -> Iterator[str]:
    """The demo's embedded Redis, emptied: each run simulates a new build, so values
    counted from the previous run's build must not be served as this one's. Its URL."""
    import redis

    from simpro_counter.store import EmbeddedRedis

    with EmbeddedRedis(data_dir) as server:  # refuses a data dir another demo is using
        with redis.Redis.from_url(server.url) as plain:
            plain.flushall()
        yield server.url


@contextmanager
def _business_activity(simulator: Simulator, *, every: float) -> Iterator[None]:
    """New invoices now and then (some from new customers), and a new job every third
    time, so the demo's counters move."""
    if every <= 0:
        yield
        return
    stop = threading.Event()

    def work() -> None:
        rng = random.Random(7)
        ticks = 0
        while not stop.wait(every):
            ticks += 1
            new = simulator.dataset.uninvoiced_customer_ids()
            simulator.dataset.add_invoice(
                customer_id=rng.choice(new) if new and rng.random() < 0.3 else None
            )
            if ticks % 3 == 0:
                simulator.dataset.add_work("jobs")

    thread = threading.Thread(target=work, name="demo activity", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@app.command()
def status(
    url: Annotated[str, typer.Option(help="Base URL of a running service.")] = (
        "http://127.0.0.1:8000"
    ),
) -> None:
    """Show every metric's cached value and refresh status on a running service."""
    from simpro_counter.metrics import METRICS

    base = url.rstrip("/")
    table = Table(box=None, pad_edge=False)
    for column in ("Metric", "Value", "Last updated", "Stale", "Refreshing", "Last error"):
        table.add_column(column)
    for metric in METRICS:
        try:
            response = httpx.get(f"{base}/api/simpro/{metric}/refresh", timeout=10)
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


@app.command()
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


@app.command()
def check(
    url: Annotated[str, typer.Option(help="Base URL of the running service.")] = (
        "http://127.0.0.1:8000"
    ),
    token: Annotated[
        str | None,
        typer.Option(
            help="The service's ADMIN_TOKEN, to check POST refresh too.",
            envvar="ADMIN_TOKEN",
            show_envvar=True,
        ),
    ] = None,
    origin: Annotated[
        str, typer.Option(help="Page origin for the CORS check (one of CORS_ORIGINS).")
    ] = "https://example.com",
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for a first value or a running refresh.")
    ] = 60.0,
) -> None:
    """Check every endpoint of a running deployment; exit code 1 if any check fails."""
    from simpro_counter.check import check_deployment

    raise typer.Exit(check_deployment(url, token, console=console, wait=wait, origin=origin))


webhooks_app = typer.Typer(help="Manage the build's webhook subscription (Simpro setup/webhooks).")
app.add_typer(webhooks_app, name="webhooks")


def _with_client(work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run `work(client)` with a Simpro client from the settings."""
    from simpro_counter.simpro import SimproClient

    async def go() -> T:
        async with SimproClient(simpro_config(load_settings())) as client:
            return await work(client)

    return _run(go())


@webhooks_app.command("register")
def webhooks_register(
    url: Annotated[str, typer.Option(help="Public URL of this service's webhook endpoint.")],
    secret: Annotated[
        str | None,
        typer.Option(help="Signing secret (default: WEBHOOK_SECRET, else a new one, printed)."),
    ] = None,
    events: Annotated[str, typer.Option(help="Comma-separated events.")] = ",".join(COUNTED_EVENTS),
    name: Annotated[str, typer.Option(help="Name of the subscription in Simpro.")] = (
        "simpro-counter"
    ),
) -> None:
    """Subscribe URL to the events that keep the counters current."""
    from simpro_counter.webhooks import subscriptions

    configured = load_settings().webhook_secret
    chosen = secret or (configured.get_secret_value() if configured else None)
    generated = chosen is None
    signing_secret = chosen or secrets.token_urlsafe(24)
    wanted = tuple(event.strip() for event in events.split(",") if event.strip())
    created = _with_client(
        lambda client: subscriptions.register(client, url, signing_secret, events=wanted, name=name)
    )
    console.print(
        f"Subscribed [bold]{created.callback_url}[/] to {', '.join(created.events)} "
        f"(subscription {created.id}, {created.status})."
    )
    if generated:
        console.print(f"Set WEBHOOK_SECRET={signing_secret} on the service.")


@webhooks_app.command("list")
def webhooks_list() -> None:
    """List the build's webhook subscriptions."""
    from simpro_counter.webhooks import subscriptions

    found = _with_client(subscriptions.list_subscriptions)
    if not found:
        console.print("No webhook subscriptions.")
        return
    table = Table("ID", "Name", "Callback URL", "Events", "Status")
    for sub in found:
        table.add_row(str(sub.id), sub.name, sub.callback_url, ", ".join(sub.events), sub.status)
    console.print(table)


@webhooks_app.command("delete")
def webhooks_delete(
    subscription_id: Annotated[int, typer.Argument(help="ID shown by `webhooks list`.")],
) -> None:
    """Delete a webhook subscription."""
    from simpro_counter.webhooks import subscriptions

    _with_client(lambda client: subscriptions.delete(client, subscription_id))
    console.print(f"Deleted webhook subscription {subscription_id}.")
