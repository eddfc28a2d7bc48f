"""Admin sessions: signed, expiring cookie values and the CSRF token bound to each.

A session value is `<expires>.<nonce>.<signature>`: the signature is an HMAC-SHA256 over
the first two parts with a key derived from ADMIN_TOKEN. The cookie never holds the
token itself, a stolen cookie stops working when it expires, and rotating ADMIN_TOKEN
changes the key, which logs every session out at once. Nothing is stored server-side,
so every replica accepts every session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

SESSION_SECONDS = 12 * 3600
# Domain separation: keys for different purposes never coincide, even from one token.
_SESSION_PURPOSE = b"simpro-counter/admin-session/v1"
_CSRF_PURPOSE = b"csrf\x00"


@dataclass(frozen=True)
class Session:
    nonce: str
    """Random per login; the CSRF token is derived from it, so it is per session."""
    expires_at: int
    """Epoch seconds."""


class SessionCodec:
    """Issues and verifies session values for one ADMIN_TOKEN."""

    def __init__(self, admin_token: str, *, lifetime: int = SESSION_SECONDS) -> None:
        self._key = hmac.new(admin_token.encode(), _SESSION_PURPOSE, hashlib.sha256).digest()
        self.lifetime = lifetime

    def issue(self, now: float | None = None) -> tuple[Session, str]:
        """A new session and its cookie value."""
        now = time.time() if now is None else now
        session = Session(nonce=secrets.token_urlsafe(18), expires_at=int(now) + self.lifetime)
        payload = f"{session.expires_at}.{session.nonce}"
        return session, f"{payload}.{self._sign(payload.encode())}"

    def verify(self, value: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None when it is forged, malformed or expired."""
        if not value or len(value) > 200:
            return None
        payload, _, signature = value.rpartition(".")
        # MAC against MAC: the expected side always has the length of a SHA-256 HMAC, so
        # the comparison reveals nothing the format does not (also for `csrf_ok`).
        if not hmac.compare_digest(signature.encode(), self._sign(payload.encode()).encode()):
            return None
        expires, _, nonce = payload.partition(".")
        if not expires.isdigit() or not nonce:
            return None
        now = time.time() if now is None else now
        if int(expires) <= now:
            return None
        return Session(nonce=nonce, expires_at=int(expires))

    def csrf_token(self, session: Session) -> str:
        """The token that state-changing requests of this session must echo back."""
        return self._sign(_CSRF_PURPOSE + session.nonce.encode())

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(
            given.encode(), self.csrf_token(session).encode()
        )

    def _sign(self, message: bytes) -> str:
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
