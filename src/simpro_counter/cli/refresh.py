"""`simpro-counter refresh`: scan every invoice now and publish the values."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table

from simpro_counter.cli.common import console, err_console, run
from simpro_counter.progress import ScanProgress
from simpro_counter.settings import Settings, load_settings


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

    _print_report(run(go()), as_json=as_json)


async def _refresh_into_store(settings: Settings, *, show_progress: bool) -> dict[str, Any]:
    """One refresh through the same lock and store the service uses; its report."""
    from simpro_counter.metrics import format_value
    from simpro_counter.wiring import open_counting

    async with open_counting(settings) as (counting, where):
        refresher = counting.refresher
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
            "storage": counting.store.storage,
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
    for text in report.get("notes", ()):  # what the build was proven to ignore
        table.add_row("Note", text)
    console.print(table)
