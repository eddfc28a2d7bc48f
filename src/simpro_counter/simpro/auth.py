"""How requests to Simpro are authenticated: a static API key, or OAuth2 client credentials.

Both are `httpx.Auth` flows so the client's transport stays injectable and the token
exchange goes through the same connection pool as the API calls. The key, the client
secret and the access token are held as `SecretStr` and unwrapped only into the request
being sent, so no repr, log line or traceback of these objects shows them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator

import httpx
from pydantic import SecretStr

from simpro_counter.errors import SimproAuthError
from simpro_counter.simpro.retry import TransientError

# Renew a little before Simpro says the token expires, so a request never races the expiry.
_RENEW_MARGIN_SECONDS = 60.0
_DEFAULT_TOKEN_LIFETIME = 3600.0


class ApiKeyAuth(httpx.Auth):
    """A Simpro API key, sent as a Bearer token; it never expires."""

    def __init__(self, api_key: SecretStr) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = _bearer(self._api_key)
        yield request


class ClientCredentialsAuth(httpx.Auth):
    """OAuth2 client credentials at `{build}/oauth2/token`, cached and renewed before expiry.

    A 401 on a request that used a cached token renews the token once and retries, which
    covers tokens revoked early or a lifetime shorter than the one announced.
    """

    requires_response_body = True

    def __init__(self, token_url: str, client_id: str, client_secret: SecretStr) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._token: SecretStr | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("the Simpro client is asynchronous; use httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._valid_token()
        if token is None:
            # Only one concurrent request fetches the token; the others wait for it.
            async with self._lock:
                token = self._valid_token()
                if token is None:
                    response = yield self._token_request()
                    await response.aread()
                    token = self._accept(response)
        request.headers["Authorization"] = _bearer(token)
        response = yield request
        if response.status_code == httpx.codes.UNAUTHORIZED:
            await response.aread()
            async with self._lock:
                if self._token == token:
                    token_response = yield self._token_request()
                    await token_response.aread()
                    token = self._accept(token_response)
                else:
                    token = self._token or token
            request.headers["Authorization"] = _bearer(token)
            yield request

    def _valid_token(self) -> SecretStr | None:
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        return None

    def _token_request(self) -> httpx.Request:
        return httpx.Request(
            "POST",
            self._token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
            },
        )

    def _accept(self, response: httpx.Response) -> SecretStr:
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.BAD_REQUEST):
            raise SimproAuthError(
                f"{response.status_code} from Simpro's token endpoint ({_oauth_error(response)})"
                ": check SIMPRO_CLIENT_ID and SIMPRO_CLIENT_SECRET"
            )
        if response.status_code != httpx.codes.OK:
            raise TransientError(f"Simpro's token endpoint answered {response.status_code}")
        try:
            body = response.json()
            token = SecretStr(str(body["access_token"]))
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, KeyError, TypeError):
            raise TransientError("Simpro's token endpoint sent no usable access_token") from None
        self._token = token
        self._expires_at = time.monotonic() + max(lifetime - _RENEW_MARGIN_SECONDS, lifetime / 2)
        return token


def _bearer(secret: SecretStr) -> str:
    return f"Bearer {secret.get_secret_value()}"


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "refused"
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or "refused")
    return "refused"
