"""The admin's HTML pages and static files, read from `web/static/` in the package."""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from fastapi import Response

from simpro_counter.web.admin.guard import secured

STATIC = Path(__file__).resolve().parent.parent / "static"

# Only these names are served: a request can never reach another file.
ASSETS = {
    "admin.js": "text/javascript; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
}


@cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _page(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return secured(
        Response(text, status_code=status, media_type="text/html; charset=utf-8", headers=headers)
    )


def disabled_page() -> Response:
    """ADMIN_TOKEN is not set: how to enable the admin, and nothing else."""
    return _page(_read("admin-disabled.html"), 403)


def login_page(
    message: str = "", status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    notice = f'<p class="notice" role="alert">{html.escape(message)}</p>' if message else ""
    return _page(_read("admin-login.html").replace("{{notice}}", notice), status, headers)


def dashboard_page(csrf_token: str) -> Response:
    return _page(_read("admin.html").replace("{{csrf}}", html.escape(csrf_token)), 200)


def asset(name: str) -> Response | None:
    media_type = ASSETS.get(name)
    if media_type is None:
        return None
    return secured(Response(_read(name), media_type=media_type))
