"""Parsing a webhook delivery: Simpro sends a thin reference, not the record.

```json
{"ID": "invoice.created", "build": "...", "action": "created",
 "name": "...", "description": "...",
 "reference": {"companyID": 0, "invoiceID": 300555},
 "date_triggered": "2023-01-31T09:05:27+00:00"}
```

Fields this service does not read (`build`, `name`, `description`, other keys of
`reference` such as `statusID`) are tolerated, not required.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from simpro_counter.errors import BadDeliveryError, SimproDataError
from simpro_counter.ids import parse_id
from simpro_counter.webhooks.events import APPLIED_EVENTS, ID_KEYS, split_event

_APPLIED = frozenset(APPLIED_EVENTS)


@dataclass(frozen=True)
class Delivery:
    event: str
    """The event name, e.g. `invoice.created`."""
    resource: str
    """The event family, e.g. `invoice` or `job`."""
    action: str
    """`created`, `updated`, `deleted`, `status`, `stage.approved` or `stage.pending`."""
    record_id: int
    company_id: int
    triggered: str
    """`date_triggered` as sent (empty when absent)."""


@dataclass(frozen=True)
class UnusedEvent:
    """A well-formed delivery of an event the service does not apply (e.g. `payment.created`
    or a customer event): acknowledged, not queued."""

    event: str


def parse_delivery(body: bytes) -> Delivery | UnusedEvent:
    """The delivery in `body`, or :class:`BadDeliveryError` saying precisely what is wrong.

    The reference of an event the service does not apply is not read: it may name its
    record in any way.
    """
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
    family = split_event(event)
    if event not in _APPLIED or family is None:
        return UnusedEvent(event[:100])
    resource, action = family
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
    """The key of the record's ID: the family's own (`invoiceID`), in any letter case.

    Never another `*ID` key: a reference may carry several (`statusID` beside
    `invoiceID`), and reading one of them as the record would fetch the wrong record.
    """
    key = ID_KEYS[resource]
    if key in reference:
        return key
    same = [k for k in reference if isinstance(k, str) and k.lower() == key.lower()]
    if len(same) == 1:
        return same[0]
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
