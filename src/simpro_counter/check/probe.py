"""Talking to the deployment under check: one request, an answer read as a model of the
HTTP contract (`simpro_counter.contract`), and the one loop that polls until an answer
is ready. Every failure is a :class:`CheckError` whose message is the detail shown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from simpro_counter.contract import Shape

# Seconds one ordinary request may take; a foreground refresh may take up to `wait`.
TIMEOUT = 10.0

ShapeT = TypeVar("ShapeT", bound=Shape)
Body = dict[str, object]


class CheckError(Exception):
    """Ends one check with a failure whose message is the detail shown."""


@dataclass(frozen=True)
class Polled:
    """The answer a poll ended with, and how many times it waited before it."""

    response: httpx.Response
    body: Body
    waits: int


class Probe:
    """Requests to one deployment, failing a check with a one-line reason (never the token:
    an error names the URL at most, and headers never appear)."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, wait: float) -> None:
        self.client = client
        self.base = base_url.rstrip("/")
        self.wait = wait

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        seconds: float = TIMEOUT,
        timeout_hint: str = "",
    ) -> httpx.Response:
        try:
            return await self.client.request(
                method, self.base + path, headers=headers, params=params, timeout=seconds
            )
        except httpx.TimeoutException:
            raise CheckError(
                f"{method} {path}: no answer within {seconds:.0f} s{timeout_hint}"
            ) from None
        except httpx.ConnectError as exc:
            reason = str(exc) or type(exc).__name__
            raise CheckError(f"cannot connect to {self.base}: {reason}") from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise CheckError(f"{method} {path} failed: {reason}") from None

    async def poll(
        self,
        path: str,
        *,
        ready: Callable[[httpx.Response, Body], bool],
        pause: Callable[[httpx.Response], float],
        timed_out: Callable[[int], str],
        headers: dict[str, str] | None = None,
    ) -> Polled:
        """GET `path` until `ready(response, body)`, waiting `pause(response)` seconds in
        between, for at most `wait` seconds in all; then fail with `timed_out(requests)`.
        `ready` may itself fail the check when an answer is malformed."""
        deadline = time.monotonic() + self.wait
        waits = 0
        while True:
            response = await self.request("GET", path, headers=headers)
            body = json_object(response, 200)
            if ready(response, body):
                return Polled(response, body, waits)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CheckError(timed_out(waits + 1))
            waits += 1
            await asyncio.sleep(min(pause(response), remaining))


def json_object(response: httpx.Response, expected: int) -> Body:
    """The JSON object of an answer that must have status `expected`."""
    if response.status_code != expected:
        raise CheckError(f"expected {expected}, got {status_line(response)}")
    try:
        body = response.json()
    except ValueError:
        raise CheckError(f"not JSON: {short(response.text)}") from None
    if not isinstance(body, dict):
        raise CheckError(f"expected a JSON object, got {short(response.text)}")
    return body


def answer(response: httpx.Response, expected: int, model: type[ShapeT]) -> ShapeT:
    """The answer, which must have status `expected`, read as `model`."""
    return parse(model, json_object(response, expected))


def parse(model: type[ShapeT], body: Body, *, context: str = "") -> ShapeT:
    """`body` as `model`, or a failure naming every field missing or of the wrong type."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise CheckError(context + "; ".join(_problem(error) for error in exc.errors())) from None


def _problem(error: ErrorDetails) -> str:
    """ "field X: missing" or "field X: expected Y, got Z"."""
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"field {name}: missing"
    ctx = error.get("ctx") or {}
    expected = str(ctx["error"]) if error["type"] == "value_error" else error["msg"]
    expected = expected.removeprefix("Input should be ").removeprefix("String should ")
    got = error["input"]
    shown = short(repr(got), 60) if isinstance(got, str) else type_name(got)
    return f"field {name}: expected {expected}, got {shown}"


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def status_line(response: httpx.Response) -> str:
    """`404 Not Found (the first words of the body)`."""
    text = f"{response.status_code} {response.reason_phrase}".strip()
    body = short(response.text)
    return f"{text} ({body})" if body else text


def short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after_seconds(header: str) -> float:
    try:
        return max(0.1, float(header))
    except ValueError:
        return 1.0  # an HTTP date or garbage: ask again soon
