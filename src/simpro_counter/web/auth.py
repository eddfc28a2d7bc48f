"""Who may trigger work: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request
from fastapi.responses import JSONResponse

from simpro_counter.settings import Settings


def admin_denied(request: Request, settings: Settings) -> JSONResponse | None:
    """None when the request may trigger work; otherwise the answer that refuses it."""
    token = settings.admin_token_value
    if token is None:
        if settings.demo and _is_loopback(request):
            return None
        return JSONResponse(
            {
                "success": False,
                "error": "Refreshing over HTTP is disabled: set ADMIN_TOKEN on the server, "
                "then send 'Authorization: Bearer <ADMIN_TOKEN>'",
            },
            status_code=403,
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()):
        return None
    return JSONResponse(
        {"success": False, "error": "Unauthorized: send 'Authorization: Bearer <ADMIN_TOKEN>'"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
