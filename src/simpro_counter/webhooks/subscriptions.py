"""The webhook subscription of a build, through Simpro's `setup/webhooks/` API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simpro_counter.errors import SimproDataError
from simpro_counter.ids import parse_id
from simpro_counter.simpro import SimproClient
from simpro_counter.webhooks.events import COUNTED_EVENTS

RESOURCE = "setup/webhooks"
DEFAULT_NAME = "simpro-counter"


@dataclass(frozen=True)
class Subscription:
    id: int
    name: str
    callback_url: str
    events: tuple[str, ...]
    status: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Subscription:
        events = body.get("Events") or []
        if not isinstance(events, list):
            raise SimproDataError(f"webhook subscription: Events is {events!r}, not a list")
        return cls(
            id=parse_id(body.get("ID"), what="webhook subscription ID"),
            name=str(body.get("Name", "")),
            callback_url=str(body.get("CallbackURL", "")),
            events=tuple(str(event) for event in events),
            status=str(body.get("Status", "")),
        )


async def list_subscriptions(client: SimproClient) -> list[Subscription]:
    columns = ("ID", "Name", "CallbackURL", "Events", "Status")
    return [
        Subscription.from_json(record) async for record in client.records(RESOURCE, columns=columns)
    ]


async def register(
    client: SimproClient,
    callback_url: str,
    secret: str,
    *,
    events: tuple[str, ...] = COUNTED_EVENTS,
    name: str = DEFAULT_NAME,
) -> Subscription:
    """Subscribe `callback_url` to `events`, signed with `secret`."""
    _, body = await client.request_json(
        "POST",
        client.company_path(RESOURCE),
        json={
            "Name": name,
            "CallbackURL": callback_url,
            "Secret": secret,
            "Events": list(events),
            "Status": "Enabled",
            "Description": "Keeps simpro-counter's counters current",
        },
    )
    if not isinstance(body, dict):
        raise SimproDataError("Simpro answered the new webhook subscription without a record")
    return Subscription.from_json(body)


async def delete(client: SimproClient, subscription_id: int) -> None:
    await client.request_json("DELETE", f"{client.company_path(RESOURCE)}{subscription_id}")
