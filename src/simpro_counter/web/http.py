"""Small helpers shared by the routers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.security import HTTPBearer

from simpro_counter.contract import Refusal
from simpro_counter.web.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    # Serialised by hand: the read path is measured in microseconds.
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


# OpenAPI pieces the routes' declarations share. The bearer scheme never refuses by itself
# (auto_error=False): `auth.admin_denied` decides, with the service's own answers.
ADMIN_BEARER = HTTPBearer(
    auto_error=False, scheme_name="adminToken", description="ADMIN_TOKEN of the server"
)
IF_NONE_MATCH: dict[str, Any] = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "An `ETag` from an earlier answer: `304` when it still matches",
    "schema": {"type": "string"},
}
ETAG_HEADER: dict[str, Any] = {"description": "Weak validator", "schema": {"type": "string"}}
CACHE_CONTROL_HEADER: dict[str, Any] = {"schema": {"type": "string"}}
NO_STORE_HEADER: dict[str, Any] = {"schema": {"type": "string", "const": "no-store"}}
RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 0},
}
NOT_MODIFIED_RESPONSE: dict[str, Any] = {
    "description": "Not modified: `If-None-Match` matched the `ETag`"
}
THROTTLED_RESPONSE: dict[str, Any] = {
    "description": "Too many wrong tokens; `Retry-After` says when to retry",
    "headers": {"Retry-After": RETRY_AFTER_HEADER},
}


def unauthorized_response(description: str) -> dict[str, Any]:
    """The `401` of a bearer token, as the routes that take one declare it."""
    return {
        "model": Refusal,
        "description": description,
        "headers": {"WWW-Authenticate": {"schema": {"type": "string", "pattern": "^Bearer"}}},
    }
