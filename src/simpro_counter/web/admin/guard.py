"""Who may see the dashboard and act on it: sessions, CSRF, same-origin checks, headers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import Request, Response

from simpro_counter.web.admin.session import Session, SessionCodec
from simpro_counter.web.http import runtime_of
from simpro_counter.web.page_policy import page_headers

COOKIE = "simpro_admin"
COOKIE_PATH = "/admin"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"

# Every admin answer carries these: the policy of every page (no framing, no inline or
# foreign scripts: web/page_policy.py), no referrer leaking the admin URL, no copy kept by
# browsers or proxies.
SECURITY_HEADERS = {
    **page_headers(),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass
class AdminContext:
    """The admin state of one app: its session codec and logouts (failed logins are
    throttled by the runtime's `token_throttle`, shared with bearer tokens)."""

    codec: SessionCodec
    revoked: dict[str, int] = field(default_factory=dict)
    """Nonce -> expiry of sessions logged out in this process (until they expire anyway)."""

    def revoke(self, session: Session) -> None:
        now = time.time()
        for nonce in [n for n, expires in self.revoked.items() if expires <= now]:
            del self.revoked[nonce]
        self.revoked[session.nonce] = session.expires_at


def context_of(request: Request) -> AdminContext | None:
    """The app's admin context; None when ADMIN_TOKEN is not set (the admin is closed)."""
    token = runtime_of(request).settings.admin_token_value
    if not token:
        return None
    context: AdminContext | None = getattr(request.app.state, "admin", None)
    if context is None:
        context = AdminContext(SessionCodec(token))
        request.app.state.admin = context
    return context


def session_of(request: Request, context: AdminContext) -> Session | None:
    """The request's valid session, or None (no cookie, forged, expired, logged out)."""
    session = context.codec.verify(request.cookies.get(COOKIE))
    if session is None or session.nonce in context.revoked:
        return None
    return session


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site or origin.

    Browsers send `Sec-Fetch-Site` and `Origin` on POSTs; clients that send neither (curl)
    are not browsers a forged page could drive, and still need the CSRF token.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        # Our own `Referrer-Policy: no-referrer` makes browsers send `Origin: null` even on
        # same-origin POSTs; then only Sec-Fetch-Site (which page scripts cannot set) can
        # vouch for the request. Sandboxed frames on other sites also send null, and
        # cross-site with it.
        return site == "same-origin"
    parts = urlsplit(origin)
    # Behind a TLS-terminating proxy the app sees http while the browser says https. (A
    # forged page cannot add X-Forwarded-Proto to a request without a CORS preflight, which
    # the admin never grants, so the header is safe here: it only widens a scheme check.)
    schemes = {request.url.scheme, request.headers.get("x-forwarded-proto", "")}
    return parts.scheme in schemes and parts.netloc == request.headers.get("host")


def is_https(request: Request) -> bool:
    # The scheme the server saw: behind a TLS-terminating proxy, the proxy's
    # X-Forwarded-Proto only when FORWARDED_ALLOW_IPS names it (uvicorn applies it then),
    # never a client's own claim.
    return request.url.scheme == "https"


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def set_session_cookie(response: Response, request: Request, value: str, lifetime: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=lifetime,
        path=COOKIE_PATH,
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=is_https(request), httponly=True, samesite="strict"
    )
