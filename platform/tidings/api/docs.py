"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, with every file
they load served by the gateway itself: FastAPI's own pages fetch their script and style
sheet from a CDN, so they are blank wherever only the gateway can be reached.

The files are Swagger UI's and ReDoc's standalone builds as the ``fastapi-offline``
package ships them (only its ``static`` folder is used), under ``ASSETS_PATH``. None of
these routes is part of the OpenAPI document.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match, Mount
from starlette.types import Scope

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
ASSETS_PATH = "/docs/static"

ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
"""``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``, ``favicon.png``."""

SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}
"""No badge from the online validator (another host), whatever the layout."""


class _Assets(Mount):
    """A mount that names itself as the request's route, as API routes do, so the HTTP
    metrics count its requests under ``ASSETS_PATH`` rather than as unmatched."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def serve(app: FastAPI) -> None:
    """Serve the documentation pages and their files on ``app`` (built with
    ``docs_url=None, redoc_url=None``), for its OpenAPI document at ``app.openapi_url``."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.router.routes.append(
        _Assets(ASSETS_PATH, app=StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    )

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=base + OAUTH2_REDIRECT_PATH,
            swagger_js_url=f"{base}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
