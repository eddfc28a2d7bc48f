"""HMAC signatures of webhook deliveries: a hex digest of the raw body, keyed with the secret.

Simpro's scheme is not documented; one working integration sees header
`X-Response-Signature` = hex HMAC-SHA1 of the body. The header name and the algorithm are
settings (`WEBHOOK_SIGNATURE_HEADER`, `WEBHOOK_SIGNATURE_ALGORITHM`).
"""

from __future__ import annotations

import hashlib
import hmac

ALGORITHMS = ("sha1", "sha256")


def sign(body: bytes, secret: str, algorithm: str) -> str:
    """The lower-case hex HMAC of `body` keyed with `secret`; `algorithm` is sha1 or sha256."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported signature algorithm {algorithm!r} (sha1 or sha256)")
    return hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()


def verify(body: bytes, header_value: str | None, secret: str, algorithm: str) -> bool:
    """Whether `header_value` is the signature of `body`, compared in constant time.

    Accepts the bare hex digest or one prefixed with the algorithm (`sha1=...`), in any
    letter case. A missing, empty or malformed header is simply not valid.
    """
    if not header_value or not secret:
        return False
    value = header_value.strip()
    prefix, sep, rest = value.partition("=")
    if sep:
        if prefix.strip().lower() != algorithm:
            return False
        value = rest.strip()
    expected = sign(body, secret, algorithm)
    try:
        candidate = value.lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(candidate, expected.encode("ascii"))
