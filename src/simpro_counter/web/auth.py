"""Who may trigger work or see details: `Authorization: Bearer <ADMIN_TOKEN>`.

Every check of the token goes through the process's `TokenThrottle` (shared with the
admin login, see `web/throttle.py`) and compares SHA-256 digests in constant time, so
neither the answers nor their timing tell a guesser anything about the token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from enum import Enum

from fastapi import Request
from fastapi.responses import JSONResponse

from simpro_counter.settings import Settings
from simpro_counter.web.http import runtime_of
from simpro_counter.web.throttle import Throttled

log = logging.getLogger("simpro_counter")

UNAUTHORIZED = "Unauthorized: send 'Authorization: Bearer <ADMIN_TOKEN>'"
DISABLED = (
    "Refreshing over HTTP is disabled: set ADMIN_TOKEN on the server, "
    "then send 'Authorization: Bearer <ADMIN_TOKEN>'"
)


class Bearer(Enum):
    """What a request's `Authorization` header proved."""

    NONE = "none"
    """No bearer token sent (or no ADMIN_TOKEN set): not an attempt, not counted."""
    VALID = "valid"
    WRONG = "wrong"
    THROTTLED = "throttled"


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison that does not reveal the token's length either."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bearer_of(request: Request, settings: Settings) -> tuple[Bearer, int]:
    """Check the request's bearer token through the throttle; (verdict, Retry-After)."""
    token = settings.admin_token_value
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if token is None or scheme.lower() != "bearer" or not given.strip():
        return Bearer.NONE, 0
    runtime = runtime_of(request)
    client = client_of(request)
    attempt = runtime.token_throttle.reserve(client)
    if isinstance(attempt, Throttled):
        runtime.warnings.warning(
            log, "bearer", "Bearer token from %s refused: too many wrong tokens", client
        )
        return Bearer.THROTTLED, attempt.retry_after
    if token_matches(given.strip(), token):
        runtime.token_throttle.refund(attempt)
        return Bearer.VALID, 0
    runtime.warnings.warning(log, "bearer", "Wrong bearer token from %s", client)
    return Bearer.WRONG, 0


def admin_denied(request: Request, settings: Settings) -> JSONResponse | None:
    """None when the request may trigger work; otherwise the answer that refuses it."""
    if settings.admin_token_value is None:
        return JSONResponse({"success": False, "error": DISABLED}, status_code=403)
    verdict, wait = bearer_of(request, settings)
    if verdict is Bearer.VALID:
        return None
    return bearer_refusal(verdict, wait)


def bearer_refusal(verdict: Bearer, wait: int) -> JSONResponse:
    """The 429 of a throttled attempt, else the 401 of a missing or wrong token."""
    if verdict is Bearer.THROTTLED:
        return JSONResponse(
            {"success": False, "error": f"Too many wrong tokens: try again in {wait} s"},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    return JSONResponse(
        {"success": False, "error": UNAUTHORIZED},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def details_denied(request: Request, settings: Settings) -> tuple[bool, JSONResponse | None]:
    """For answers with a public and a detailed form: (show details, refusal).

    Without a bearer token: the public form. With the right one: the details. A wrong or
    throttled one is refused like on refresh (otherwise the detailed answer would be an
    unthrottled way to test guesses).
    """
    verdict, wait = bearer_of(request, settings)
    if verdict is Bearer.NONE:
        return False, None
    if verdict is Bearer.VALID:
        return True, None
    return False, bearer_refusal(verdict, wait)
