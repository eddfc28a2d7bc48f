"""Simpro authentication: a static API key, or OAuth2 client-credentials tokens."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

UNAUTHORIZED_BODY = {"errors": [{"message": "Unauthorized"}]}


@dataclass(frozen=True)
class Credentials:
    api_key: str
    client_id: str
    client_secret: str
    token_lifetime: int  # seconds


class Authenticator:
    """Checks Bearer credentials and issues access tokens that expire on `clock`."""

    def __init__(self, credentials: Credentials, clock: Callable[[], float]) -> None:
        self.credentials = credentials
        self._clock = clock
        self._tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)

    def issue(self, client_id: str, client_secret: str) -> str | None:
        creds = self.credentials
        if not (
            secrets.compare_digest(client_id, creds.client_id)
            and secrets.compare_digest(client_secret, creds.client_secret)
        ):
            return None
        now = self._clock()
        # Forget expired tokens here so a long benchmark does not grow the dict forever.
        self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
        token = secrets.token_urlsafe(24)
        self._tokens[token] = now + creds.token_lifetime
        return token

    def authorized(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return False
        if secrets.compare_digest(value, self.credentials.api_key):
            return True
        expiry = self._tokens.get(value)
        return expiry is not None and self._clock() < expiry


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    return (client_id, client_secret) if sep else None


def token_endpoint(authenticator: Authenticator) -> Callable[[Request], Awaitable[Response]]:
    """POST /oauth2/token for grant_type=client_credentials.

    Credentials come from the form body or HTTP Basic, as RFC 6749 allows. The body
    is parsed by hand because Starlette's form parser needs python-multipart.
    """

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        grant = form.get("grant_type")
        if grant is None:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if grant != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        basic = _basic_credentials(request.headers.get("authorization"))
        client_id, client_secret = basic or (
            form.get("client_id", ""),
            form.get("client_secret", ""),
        )
        issued = authenticator.issue(client_id, client_secret)
        if issued is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse(
            {
                "access_token": issued,
                "token_type": "Bearer",
                "expires_in": authenticator.credentials.token_lifetime,
            },
            headers={"Cache-Control": "no-store"},
        )

    return token
