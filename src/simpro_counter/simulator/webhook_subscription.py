"""A webhook subscription of the simulated build, and the fields a POST or PATCH gives."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

from simpro_counter.webhooks.events import INVOICE_EVENTS

from .records import rfc3339

_T = TypeVar("_T")


@dataclass
class Subscription:
    id: int
    company_id: int
    name: str
    callback_url: str
    secret: str = ""
    events: tuple[str, ...] = INVOICE_EVENTS
    status: str = "Enabled"
    description: str = ""
    email: str = ""  # where Simpro writes about failing deliveries
    date_created: int = 0  # epoch seconds

    def as_json(self) -> dict[str, object]:
        return {
            "ID": self.id,
            "Name": self.name,
            "CallbackURL": self.callback_url,
            "Secret": self.secret,
            "Email": self.email,
            "Events": list(self.events),
            "Status": self.status,
            "Description": self.description,
            "DateCreated": rfc3339(self.date_created),
        }


@dataclass(frozen=True)
class SubscriptionFields:
    """The fields a POST or PATCH of a subscription gives; None: not given (left as is)."""

    name: str | None = None
    callback_url: str | None = None
    secret: str | None = None
    events: tuple[str, ...] | None = None
    status: str | None = None
    description: str | None = None
    email: str | None = None

    def applied_to(self, sub: Subscription) -> Subscription:
        """`sub` with every given field replaced."""
        return replace(
            sub,
            name=_given(self.name, sub.name),
            callback_url=_given(self.callback_url, sub.callback_url),
            secret=_given(self.secret, sub.secret),
            events=_given(self.events, sub.events),
            status=_given(self.status, sub.status),
            description=_given(self.description, sub.description),
            email=_given(self.email, sub.email),
        )


def _given(value: _T | None, current: _T) -> _T:
    return current if value is None else value
