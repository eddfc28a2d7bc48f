"""Parsing a webhook delivery: Simpro sends a thin reference, not the record.

```json
{"ID": "invoice.created", "build": "...", "action": "created",
 "reference": {"companyID": 0, "invoiceID": 300555},
 "date_triggered": "2023-01-31T09:05:27+00:00"}
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from simpro_counter.errors import BadDeliveryError, SimproDataError, UnknownEventError
from simpro_counter.ids import parse_id
from simpro_counter.webhooks.events import ID_KEYS, KNOWN_EVENTS

_KNOWN = frozenset(KNOWN_EVENTS)


@dataclass(frozen=True)
class Delivery:
    event: str
    """The event name, e.g. `invoice.created`."""
    resource: str
    """The event family, e.g. `invoice` or `company.customer`."""
    action: str
    """`created`, `updated`, `deleted` or `status`."""
    record_id: int
    company_id: int
    triggered: str
    """`date_triggered` as sent (empty when absent)."""


def parse_delivery(body: bytes) -> Delivery:
    """The delivery in `body`, or :class:`BadDeliveryError` saying precisely what is wrong."""
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadDeliveryError(f"Body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadDeliveryError(f"Body must be a JSON object, not {_json_type(payload)}")
    event = payload.get("ID")
    if event is None or event == "":
        raise BadDeliveryError('Missing event name: the "ID" field (e.g. "invoice.created")')
    if not isinstance(event, str):
        raise BadDeliveryError(f'"ID" must be an event name string, not {_json_type(event)}')
    if event not in _KNOWN:
        raise UnknownEventError(
            f"Unknown event {event[:100]!r}; known: {', '.join(sorted(KNOWN_EVENTS))}"
        )
    resource, _, action = event.rpartition(".")
    reference = payload.get("reference")
    if not isinstance(reference, dict):
        what = "missing" if reference is None else f"{_json_type(reference)}, not an object"
        raise BadDeliveryError(f'"reference" is {what}')
    key = _id_key(resource, reference)
    try:
        record_id = parse_id(reference[key], what=f"reference.{key}")
        company_raw = reference.get("companyID", 0)
        company_id = parse_id(company_raw, what="reference.companyID")
    except SimproDataError as exc:
        raise BadDeliveryError(str(exc)) from None
    triggered = payload.get("date_triggered")
    return Delivery(
        event=event,
        resource=resource,
        action=action,
        record_id=record_id,
        company_id=company_id,
        triggered=triggered if isinstance(triggered, str) else "",
    )


def _id_key(resource: str, reference: dict[str, Any]) -> str:
    key = ID_KEYS[resource]
    if key in reference:
        return key
    others = [k for k in reference if k.endswith("ID") and k != "companyID"]
    if len(others) == 1:
        return others[0]
    found = ", ".join(repr(str(k)[:40]) for k in list(reference)[:10]) or "no keys"
    raise BadDeliveryError(f'Missing record ID: "reference" has no {key!r} (it has {found})')


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
