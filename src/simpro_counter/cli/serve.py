"""Commands that run something here: the service (`serve`), the Simpro simulator
(`simulate`), and both with an embedded Redis (`demo`)."""

from __future__ import annotations

import os
import random
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from pydantic import SecretStr

from simpro_counter.cli.common import (
    config_error_exit,
    configure_logging,
    console,
    settings_or_exit,
)
from simpro_counter.settings import Settings, admin_token_problem

if TYPE_CHECKING:
    from simpro_counter.simulator import Simulator


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
    ignore_id_filters: Annotated[
        bool, typer.Option(help="Act as a build that does not search on ID (filters ignored).")
    ] = False,
    ignore_if_modified_since: Annotated[
        bool, typer.Option(help="Act as a build that ignores If-Modified-Since (all records).")
    ] = False,
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
            ignore_id_filters=ignore_id_filters,
            ignore_if_modified_since=ignore_if_modified_since,
        ),
        host,
        port,
    )


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface (default: HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT or 8000).")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes on the one port (the embedded Redis is shared by them).",
        ),
    ] = 1,
) -> None:
    """Run the service: the counters API over Redis, refreshed in the background."""
    settings = settings_or_exit()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings.model_copy(update=overrides)
    if workers > 1:
        from simpro_counter.cli.workers import serve_workers

        serve_workers(settings, workers=workers, access_log=access_log)
        return
    _serve(settings, access_log=access_log)


def _serve(settings: Settings, *, access_log: bool) -> None:
    import uvicorn

    from simpro_counter.cli.server_options import server_options
    from simpro_counter.web import create_app

    configure_logging()
    uvicorn.run(create_app(settings), **server_options(settings, access_log=access_log))


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
    token = os.environ.get("ADMIN_TOKEN") or secrets.token_urlsafe(32)
    problem = admin_token_problem(token)
    if problem is not None:
        config_error_exit(f"ADMIN_TOKEN is invalid: {problem} (or unset it for a fresh one)")
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
            simpro_api_key=SecretStr(sim_config.api_key),
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
            f"  Check       ADMIN_TOKEN={token} simpro-counter check --url {base}\n"
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
