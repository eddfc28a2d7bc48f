"""The admin's endpoints: the page, login and logout, its JSON state, the refresh button,
the growth chart."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from simpro_counter.errors import StoreError
from simpro_counter.growth import HistoryUnavailableError
from simpro_counter.metrics import Interval
from simpro_counter.refresh import CUSTOMERS
from simpro_counter.web.admin import pages
from simpro_counter.web.admin.chart import growth_svg
from simpro_counter.web.admin.guard import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    AdminContext,
    clear_session_cookie,
    context_of,
    same_origin,
    secured,
    session_of,
    set_session_cookie,
)
from simpro_counter.web.admin.session import Session
from simpro_counter.web.admin.state import METRIC_NAMES, dashboard_state
from simpro_counter.web.auth import client_of, token_matches
from simpro_counter.web.http import json_response, runtime_of
from simpro_counter.web.reads import RETRY_AFTER_SECONDS
from simpro_counter.web.throttle import Throttled

router = APIRouter(prefix="/admin", include_in_schema=False)
log = logging.getLogger("simpro_counter.admin")

# Each wrong token costs the guesser this long (on top of the per-client limit).
FAILED_LOGIN_DELAY = 0.3
_FORM_LIMIT = 4096
_DISABLED = "The admin is disabled: set ADMIN_TOKEN on the server to enable it"
_CROSS_SITE = "Refused: the request did not come from this site's admin page"
_INTERVALS: dict[str, Interval] = {"month": "month", "quarter": "quarter", "year": "year"}


@router.get("")
async def admin_page(request: Request) -> Response:
    context = context_of(request)
    if context is None:
        return pages.disabled_page()
    session = session_of(request, context)
    if session is not None:
        return pages.dashboard_page(context.codec.csrf_token(session))
    if request.cookies.get(COOKIE) is None:
        return pages.login_page()
    response = pages.login_page("Your session has ended; sign in again.")
    clear_session_cookie(response, request)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    context = context_of(request)
    if context is None:
        return pages.disabled_page()
    if not same_origin(request):
        return pages.login_page(_CROSS_SITE, 403)
    client = client_of(request)
    runtime = runtime_of(request)
    # Counted before the body is read: parallel logins that hold their bodies open are
    # each counted at once, so no more than the limit get to try a token.
    attempt = runtime.token_throttle.reserve(client)
    if isinstance(attempt, Throttled):
        runtime.warnings.warning(
            log, "login", "Admin login from %s refused: too many wrong tokens", client
        )
        wait = attempt.retry_after
        return pages.login_page(
            f"Too many wrong tokens: try again in {wait} s.", 429, {"Retry-After": str(wait)}
        )
    form = await _form(request)
    expected = runtime.settings.admin_token_value or ""
    if not token_matches((form or {}).get("token", ""), expected):
        runtime.warnings.warning(log, "login", "Admin login refused for %s: wrong token", client)
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        return pages.login_page("Wrong token.", 401)
    runtime.token_throttle.refund(attempt)
    _, value = context.codec.issue()
    response = RedirectResponse("/admin", status_code=303)
    set_session_cookie(response, request, value, context.codec.lifetime)
    log.info("Admin login from %s", client)
    return secured(response)


@router.post("/logout")
async def logout(request: Request) -> Response:
    context = context_of(request)
    response: Response = RedirectResponse("/admin", status_code=303)
    session = session_of(request, context) if context is not None else None
    if context is not None and session is not None:
        # A forged page must not be able to log the admin out either.
        denied = await _unsafe_request_denied(request, context, session, form_allowed=True)
        if denied is not None:
            return denied
        context.revoke(session)
    clear_session_cookie(response, request)
    return secured(response)


def _signed_out(request: Request) -> Response | None:
    """403 when the admin is disabled, 401 without a session; None when signed in."""
    context = context_of(request)
    if context is None:
        return _json({"error": _DISABLED}, 403)
    if session_of(request, context) is None:
        return _json({"error": "Not signed in: sign in at /admin"}, 401)
    return None


@router.get("/api/state")
async def state(request: Request) -> Response:
    refused = _signed_out(request)
    if refused is not None:
        return refused
    try:
        return _json(await dashboard_state(runtime_of(request)))
    except StoreError as exc:  # Redis answered but refused; being down is handled below it
        return _json({"error": str(exc)}, 503)


@router.get("/api/growth.svg")
async def growth_chart(request: Request) -> Response:
    """The customer growth chart (see chart.py) for `interval` = month, quarter or year."""
    refused = _signed_out(request)
    if refused is not None:
        return refused
    interval = request.query_params.get("interval", "month")
    if interval not in _INTERVALS:
        return _json({"error": "interval must be month, quarter or year"}, 400)
    try:
        growth = await runtime_of(request).growth_history(_INTERVALS[interval])
    except (HistoryUnavailableError, StoreError) as exc:
        response = _json({"error": str(exc)}, 503)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    svg = growth_svg(growth.points, growth.interval, undated=growth.undated)
    return secured(Response(svg, media_type="image/svg+xml; charset=utf-8"))


@router.post("/api/refresh")
async def refresh(request: Request) -> Response:
    context = context_of(request)
    if context is None:
        return _json({"error": _DISABLED}, 403)
    session = session_of(request, context)
    if session is None:
        return _json({"error": "Not signed in: sign in at /admin"}, 401)
    denied = await _unsafe_request_denied(request, context, session, form_allowed=False)
    if denied is not None:
        return denied
    metric = request.query_params.get("metric", CUSTOMERS)
    if metric not in METRIC_NAMES:
        return _json({"error": f"Unknown metric: {metric[:40]}"}, 404)
    refresher = runtime_of(request).refresher
    # start_background only knows about this process; the lock covers the other replicas.
    if await refresher.is_refreshing(metric) or not refresher.start_background(metric):
        return _json(
            {"started": False, "isRefreshing": True, "error": "A refresh is already running"},
            409,
        )
    log.info("Refresh of %s started from the admin by %s", metric, client_of(request))
    return _json(
        {"started": True, "isRefreshing": True, "metric": metric, "message": "Refresh started"},
        202,
    )


@router.get("/static/{name}")
async def static(name: str) -> Response:
    return pages.asset(name) or _json({"error": "Not found"}, 404)


async def _unsafe_request_denied(
    request: Request, context: AdminContext, session: Session, *, form_allowed: bool
) -> Response | None:
    """Refuse a state-changing request that is cross-site or lacks the session's CSRF token."""
    if not same_origin(request):
        return _json({"error": _CROSS_SITE}, 403)
    given = request.headers.get(CSRF_HEADER)
    if given is None and form_allowed:
        given = ((await _form(request)) or {}).get(CSRF_FIELD)
    if not context.codec.csrf_ok(session, given):
        return _json({"error": "Refused: missing or wrong CSRF token; reload the page"}, 403)
    return None


async def _form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form body (python-multipart is not needed for two fields)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_LIMIT:
            return None
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:  # more fields than any admin form has
        return None
    return {name: values[0] for name, values in fields.items()}


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return secured(json_response(body, status))
