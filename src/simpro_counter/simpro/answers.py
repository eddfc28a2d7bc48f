"""What Simpro's answers hold, read off an HTTP response: a page of a list with the
headers that describe the whole list, the client's request counts, and Simpro's own
words from an error body."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from simpro_counter.errors import SimproDataError

Record = dict[str, Any]
Params = Mapping[str, str | int]


@dataclass
class RequestStats:
    """What the client has sent so far; every attempt of a retried request counts."""

    requests: int = 0
    retries: int = 0
    by_status: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True)
class Page:
    """One page of a list endpoint with the headers that describe the whole list."""

    number: int
    records: list[Record]
    total: int | None
    """`Result-Total`: records in the whole list, as Simpro counted them for this answer."""
    page_count: int | None
    """`Result-Pages`, when Simpro sends it."""
    date: str | None
    """The response's `Date` header: the cursor for a later `If-Modified-Since`."""
    not_modified: bool = False


def records_of(body: Any, where: str) -> list[Record]:
    if not isinstance(body, list):
        raise SimproDataError(f"{where} sent {type(body).__name__}, not a JSON array")
    for index, record in enumerate(body):
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise SimproDataError(f"{where}: item {index} is {kind}, not an object")
    return body


def int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def simpro_message(response: httpx.Response) -> str:
    """Simpro's own words from an error body (`{"errors": [{"message": ...}]}` or similar)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] if text and not text.startswith("<") else "no details"
    messages: list[str] = []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            for error in errors:
                if isinstance(error, dict) and error.get("message"):
                    path = f"{error['path']}: " if error.get("path") else ""
                    messages.append(f"{path}{error['message']}")
        for key in ("message", "error_description", "error"):
            if not messages and isinstance(body.get(key), str):
                messages.append(body[key])
    return "; ".join(messages)[:300] or "no details"
