"""`simpro-counter webhooks ...`: manage the build's webhook subscription."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from simpro_counter.cli.common import T, console, run
from simpro_counter.settings import load_settings, simpro_config
from simpro_counter.webhooks.events import COUNTED_EVENTS

if TYPE_CHECKING:
    from simpro_counter.simpro import SimproClient

webhooks_app = typer.Typer(help="Manage the build's webhook subscription (Simpro setup/webhooks).")


def _with_client(work: Callable[[SimproClient], Coroutine[Any, Any, T]]) -> T:
    """Run `work(client)` with a Simpro client from the settings."""
    from simpro_counter.simpro import SimproClient

    async def go() -> T:
        async with SimproClient(simpro_config(load_settings())) as client:
            return await work(client)

    return run(go())


@webhooks_app.command("register")
def webhooks_register(
    url: Annotated[str, typer.Option(help="Public URL of this service's webhook endpoint.")],
    secret_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the signing secret (mode 600); default: WEBHOOK_SECRET from "
            "the environment, else a new one, printed. Never pass the secret itself.",
        ),
    ] = None,
    events: Annotated[str, typer.Option(help="Comma-separated events.")] = ",".join(COUNTED_EVENTS),
    name: Annotated[str, typer.Option(help="Name of the subscription in Simpro.")] = (
        "simpro-counter"
    ),
) -> None:
    """Subscribe URL to the events that keep the counters current."""
    from simpro_counter.cli.secret_files import secret_or_exit
    from simpro_counter.webhooks import subscriptions

    chosen = secret_or_exit(secret_file, load_settings().webhook_secret, "WEBHOOK_SECRET")
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
