"""The `simpro-counter` command: a thin Typer layer over the library."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from simpro_counter.errors import ConfigError, SimproCounterError
from simpro_counter.progress import ScanProgress
from simpro_counter.scan import ScanReport, scan_customers
from simpro_counter.settings import SimproConfig, load_settings, simpro_config

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


async def scan(
    config: SimproConfig,
    *,
    show_progress: bool,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ScanReport:
    """One full scan with the CLI's progress bar (when asked for)."""
    from simpro_counter.simpro import SimproClient

    async with SimproClient(config, transport=transport) as client:
        if not show_progress:
            return await scan_customers(client)
        with ScanProgress(err_console, client.stats) as progress:
            return await scan_customers(client, observer=progress)


def _print_report(report: ScanReport, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.as_json()) + "\n")
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("[bold]Unique customers", f"[bold green]{report.count:,}")
    table.add_row("Invoices", f"{report.total_invoices:,}")
    table.add_row("Invoices without a customer", f"{report.invoices_without_customer:,}")
    table.add_row("Pages", f"{report.pages:,}")
    table.add_row("Requests", f"{report.requests:,} ({report.retries:,} retries)")
    table.add_row("Re-read after changes", f"{report.reconciled:,}")
    table.add_row("Duration", f"{report.duration:.1f} s")
    console.print(table)


@app.command()
def refresh(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Scan every invoice now and print the exact number of unique customers."""

    async def go() -> ScanReport:
        config = simpro_config(load_settings())
        return await scan(config, show_progress=not as_json and err_console.is_terminal)

    _print_report(_run(go()), as_json=as_json)


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8089,
    invoices: Annotated[int, typer.Option(help="Invoices in the dataset.")] = 5000,
    customers: Annotated[int, typer.Option(help="Customers in the dataset.")] = 600,
    seed: Annotated[int, typer.Option(help="Seed of the dataset and faults.")] = 1,
    rate: Annotated[float, typer.Option(help="Requests/second before 429 (0: none).")] = 10.0,
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
            latency=latency,
            fault_rate=fault_rate,
            api_key=api_key,
        ),
        host,
        port,
    )


@app.command()
def demo(
    invoices: Annotated[int, typer.Option(help="Invoices in the simulated build.")] = 5000,
    customers: Annotated[int, typer.Option(help="Customers in the simulated build.")] = 600,
    latency: Annotated[float, typer.Option(help="Simulated seconds per answer.")] = 0.2,
    fault_rate: Annotated[float, typer.Option(help="Share of simulated failures.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the simulated data.")] = 7,
) -> None:
    """Try the product without Simpro: a simulated build, scanned and counted exactly."""
    from simpro_counter.simulator import SimulatorConfig, running_simulator

    sim_config = SimulatorConfig(
        invoices=invoices,
        customers=customers,
        seed=seed,
        latency=latency,
        fault_rate=fault_rate,
        slow_seconds=3.0,
    )
    with running_simulator(sim_config) as running:
        console.print(
            f"Simpro simulator at [link]{running.url}[/] "
            f"({invoices:,} invoices, {fault_rate:.0%} faults injected)"
        )
        config = SimproConfig(
            base_url=running.url,
            api_key=sim_config.api_key,
            rate_limit=sim_config.rate,
            timeout=2.0,
        )
        report = _run(scan(config, show_progress=err_console.is_terminal))
        truth = running.simulator.truth()
    _print_report(report, as_json=False)
    verdict = "[green]exact" if report.count == truth.customers else "[red]WRONG"
    console.print(
        f"\n[bold]{report.count:,}+ Clients Served[/]  "
        f"(simulator's ground truth: {truth.customers:,} → {verdict}[/])"
    )
