"""Public pages: the `<simpro-counter>` widget script and the homepage.

The files are read once, at import, with their gzip form and ETags: the widget is
requested by every page view of every site that embeds it, so serving it reads no file
and compresses nothing.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Request, Response

from simpro_counter.web.http import runtime_of
from simpro_counter.web.page_policy import page_headers
from simpro_counter.web.reads import etag_matches

STATIC = Path(__file__).resolve().parent / "static"

# Browsers and CDNs reuse the script for an hour and keep serving it for a day while they
# revalidate: a new version reaches every visitor within the hour, and pages never wait.
WIDGET_CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=86400"
# The homepage is small and changes with the service: always revalidated (cheap, ETag).
PAGE_CACHE_CONTROL = "no-cache"

router = APIRouter()


@dataclass(frozen=True)
class Asset:
    """One static file, ready to send as-is or gzipped."""

    media_type: str
    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every answer (an HTML page's security policy)."""

    @classmethod
    def load(cls, name: str, media_type: str) -> Asset:
        body = (STATIC / name).read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:20]
        # mtime=0: byte-identical from every replica and restart, as the shared ETag promises.
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        # A page's policy allows exactly its own inline script and style, by hash.
        headers = page_headers(body.decode()) if media_type.startswith("text/html") else {}
        return cls(media_type, body, gzipped, f'"{digest}"', f'"{digest}-gz"', headers)

    def response(self, request: Request, cache_control: str, **extra: str) -> Response:
        """The file, gzipped when the client takes it; 304 when it has it already."""
        compressed = _accepts_gzip(request.headers.get("accept-encoding", ""))
        etag = self.gzip_etag if compressed else self.etag
        headers = {
            "ETag": etag,
            "Cache-Control": cache_control,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            **self.headers,
            **extra,
        }
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and etag_matches(if_none_match.encode(), etag.encode()):
            return Response(status_code=304, headers=headers)
        if compressed:
            headers["Content-Encoding"] = "gzip"
        body = b"" if request.method == "HEAD" else (self.gzipped if compressed else self.body)
        response = Response(body, media_type=self.media_type, headers=headers)
        if request.method == "HEAD":  # the length of the body a GET would get
            response.headers["content-length"] = str(len(self.gzipped if compressed else self.body))
        return response


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (and does not refuse it with q=0)."""
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() in ("gzip", "x-gzip"):
            quality = params.strip().removeprefix("q=")
            try:
                return not params.strip() or float(quality) > 0
            except ValueError:
                return True
    return False


WIDGET = Asset.load("widget.js", "application/javascript; charset=utf-8")
DEMO_HOME = Asset.load("home.html", "text/html; charset=utf-8")
LANDING = Asset.load("landing.html", "text/html; charset=utf-8")


# GET and HEAD as two routes: one route with both methods gives OpenAPI a duplicate
# operation ID.
@router.get(
    "/widget.js",
    summary="The <simpro-counter> web component (docs/widget.md)",
    response_class=Response,
    responses={200: {"content": {"application/javascript": {}}}, 304: {}},
)
@router.head("/widget.js", include_in_schema=False)
async def widget_js(request: Request) -> Response:
    # Any site may load it, also one that isolates itself (Cross-Origin-Embedder-Policy).
    return WIDGET.response(
        request, WIDGET_CACHE_CONTROL, **{"Cross-Origin-Resource-Policy": "cross-origin"}
    )


@router.get("/", include_in_schema=False)
@router.head("/", include_in_schema=False)
async def home(request: Request) -> Response:
    # Demo mode: a sample company homepage with the widget. Otherwise a short page for
    # whoever opens the service's URL: what it is, the widget on it, how to embed it.
    page = DEMO_HOME if runtime_of(request).settings.demo else LANDING
    return page.response(request, PAGE_CACHE_CONTROL)
