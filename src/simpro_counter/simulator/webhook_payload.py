"""What a simulated webhook delivery says: which events a change sends, and their payload.

A payload is what SIMPRO.md describes: the event `ID`, `build`, `name`, `description`,
`action`, a thin `reference` and `date_triggered` in UTC with `+00:00`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from .dataset import ChangeEvent


def event_names(event: ChangeEvent, *, stage_change_sends_updated: bool) -> list[str]:
    """The webhook events one data set change sends, in the order they go out.

    A Stage change sends `<resource>.stage.<stage>`; an `<resource>.updated` goes with it
    when something else changed too, or always with `stage_change_sends_updated`.
    """
    if event.new_stage is None:
        return [event.name]
    stage_event = f"{event.resource}.stage.{event.new_stage.lower()}"
    if event.stage_only and not stage_change_sends_updated:
        return [stage_event]
    return [event.name, stage_event]


def describe(event: str) -> tuple[str, str]:
    """A payload's `name` and `description`: ("Invoice Created", "An invoice was created.")."""
    family, _, action = event.rpartition(".")
    name = " ".join(word.capitalize() for word in event.split("."))
    if family.endswith(".stage"):
        family = family.removesuffix(".stage")
        what = f"'s stage changed to {action}"
    else:
        what = f" was {action}" if action != "status" else "'s status changed"
    words = family.replace(".", " ")
    article = "An" if words[:1] in ("a", "e", "i", "o", "u") else "A"
    return name, f"{article} {words}{what}."


def utc_timestamp(epoch_seconds: int) -> str:
    """`date_triggered` as Simpro sends it: UTC with a `+00:00` offset, never `Z`."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


def payload_body(
    name: str, event: ChangeEvent, reference: Mapping[str, int], *, build: str
) -> bytes:
    """The JSON body of event `name` (one of event_names(event)), compact as Simpro's."""
    title, description = describe(name)
    payload = {
        "ID": name,
        "build": build,
        "name": title,
        "description": description,
        "action": name.removeprefix(f"{event.resource}."),
        "reference": dict(reference),
        "date_triggered": utc_timestamp(event.timestamp),
    }
    return json.dumps(payload, separators=(",", ":")).encode()
