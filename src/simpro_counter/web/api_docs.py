"""The API documentation pages, /docs (Swagger UI) and /redoc, with the pages' policy.

fastapi-offline serves Swagger UI's and ReDoc's files from the service itself (no CDN:
they work on a machine without internet); these routes build the pages as it would, with
FastAPI's own HTML, and add the headers of every page (web/page_policy.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

from simpro_counter.web.page_policy import secure_page

# Where fastapi-offline serves the files of Swagger UI and ReDoc (create_app passes it).
ASSETS_URL = "/docs-assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# ReDoc styles itself with <style> elements it generates at run time (no hash can name
# them), runs its search in a worker made from a blob: URL, and shows a "powered by" logo
# from its own site. Its page alone gets these; its scripts stay the service's own.
_REDOC_WIDEN = {
    "style-src": "'unsafe-inline'",
    "img-src": "https://cdn.redoc.ly",
    "worker-src": "'self' blob:",
}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return secure_page(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=request.app.swagger_ui_parameters,
        )
    )


@router.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return secure_page(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return secure_page(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            with_google_fonts=False,
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        ),
        _REDOC_WIDEN,
    )
