"""The `simpro-counter` command: a thin Typer layer over the library.

One module per kind of command, registered below in the order `--help` lists them:

- `refresh`: count now, through the store and lock the service uses;
- `serve`: run the service, the simulator (`simulate`) or both with Redis (`demo`);
- `remote`: read or check a running service (`status`, `history`, `check`);
- `webhooks`: manage the build's webhook subscription.
"""

from __future__ import annotations

import logging

import typer

from simpro_counter.cli import refresh, remote, serve, webhooks

app = typer.Typer(
    help="Exact, instant counters (unique customers, ...) from a Simpro build.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(refresh.refresh)
app.command()(serve.simulate)
app.command()(serve.serve)
app.command()(serve.demo)
app.command()(remote.status)
app.command()(remote.history)
app.command()(remote.check)
app.add_typer(webhooks.webhooks_app, name="webhooks")

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    # stamina logs every retry at WARNING; the scan counts retries itself and shows them.
    logging.getLogger("stamina").setLevel(logging.ERROR)
    app()
