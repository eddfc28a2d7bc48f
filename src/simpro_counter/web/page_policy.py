"""The security headers of every HTML page the service serves (homepage, API docs, admin).

One Content-Security-Policy for all of them: scripts, styles, images and requests from the
service itself only, no plugins, no `<base>`, forms posting back only here, and no
framing by any site (clickjacking), also for browsers that know only X-Frame-Options.

A page's own inline `<script>` and `<style>` elements are allowed by their SHA-256 hash,
computed from the HTML that is sent: an inline script injected into a page (by a template
bug, say) has another hash and does not run. A page that needs more (ReDoc's generated
styles and search worker) widens one directive, by name, where it is served.

/widget.js is not a page: it runs inside other sites' pages, under their policy, and is
served without these headers.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from fastapi.responses import HTMLResponse

# Without a `src` attribute: the element's text is what runs (or styles).
_INLINE = re.compile(r"<(script|style)(\s[^>]*)?>(.*?)</\1\s*>", re.DOTALL | re.IGNORECASE)

_BASE_DIRECTIVES: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "object-src": "'none'",
}


def content_security_policy(html: str = "", widen: Mapping[str, str] | None = None) -> str:
    """The policy for `html`: its inline scripts and styles allowed by hash, and `widen`
    (directive -> sources) added to the directives it names."""
    hashes: dict[str, list[str]] = {"script-src": [], "style-src": []}
    for tag, attributes, text in _INLINE.findall(html):
        if tag.lower() == "script" and "src=" in (attributes or "").lower():
            continue
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        hashes[f"{tag.lower()}-src"].append(f"'sha256-{digest}'")
    directives = dict(_BASE_DIRECTIVES)
    for directive, sources in (widen or {}).items():
        directives[directive] = f"{directives.get(directive, '')} {sources}".strip()
    for directive, allowed in hashes.items():
        # A hash would make browsers ignore 'unsafe-inline' in the same directive.
        if allowed and "'unsafe-inline'" not in directives[directive]:
            directives[directive] += " " + " ".join(allowed)
    return "; ".join(f"{name} {sources}" for name, sources in directives.items())


def page_headers(html: str = "", widen: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers every HTML page carries (admin pages add their own on top)."""
    return {
        "Content-Security-Policy": content_security_policy(html, widen),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
    }


def secure_page(page: HTMLResponse, widen: Mapping[str, str] | None = None) -> HTMLResponse:
    """A generated page (the API docs) with the headers for the HTML it holds."""
    page.headers.update(page_headers(bytes(page.body).decode(), widen))
    return page
