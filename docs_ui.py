"""Swagger UI (/docs) and ReDoc (/redoc) served with their assets from the app itself.

FastAPI's own pages load their scripts from a CDN, so they are blank without internet. The
assets here come from the pinned `fastapi-offline` package (README "Dependencies"); only its
files are used, the pages are FastAPI's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

from openapi_docs import headers_of

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"


def install_docs(app: FastAPI) -> None:
    """Add /docs, its OAuth2 redirect page, /redoc and the assets they load.

    The app must be built with `docs_url=None, redoc_url=None`. Plain Starlette routes, as
    FastAPI's own docs routes are: outside the schema and the app-wide dependencies.
    """
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{DOCS_URL}/oauth2-redirect"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            init_oauth=app.swagger_ui_init_oauth,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,  # fonts from a CDN too; ReDoc falls back to system fonts
        )

    complete_schema(app)
    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(redirect_url, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)


_EVERY_RESPONSE = headers_of("X-Request-Id")
# What the pipeline adds to every answer of a rate-limited route (one that documents 429), but
# to its own 413, which is refused before any limit is checked.
_LIMITED = headers_of("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def complete_schema(app: FastAPI) -> None:
    """Add to the app's OpenAPI schema the headers every response of a route carries: routes
    declare only their own (openapi_docs.with_headers, openapi_docs.error_responses)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for item in schema["paths"].values():
            for operation in item.values():
                limited = "429" in operation["responses"]
                for status, response in operation["responses"].items():
                    headers = response.setdefault("headers", {})
                    headers.update(_EVERY_RESPONSE)
                    if limited and status != "413":
                        headers.update(_LIMITED)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point
