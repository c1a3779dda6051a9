"""Error responses: every failure becomes ``{"error": {code, message, details}}``
(``details`` is ``{}`` when there is nothing more to say)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from tidings.errors import RateLimited, TidingsError

log = logging.getLogger("tidings.api")


def error_body(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


MALFORMED_BODY = "request body is not valid JSON text in UTF-8"
"""FastAPI answers a body it cannot decode (invalid UTF-8) with a bare 400."""


INVALID_UNICODE = (
    "invalid_input",
    "request contains text that is not valid Unicode (a lone surrogate escape such as \\ud800)",
)


def describe_validation(errors: list[Any]) -> tuple[int, str, list[dict[str, Any]]]:
    """Status, one-line summary and a JSON-safe list of field errors."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "request body is not valid JSON", []
    summary = []
    clean = []
    for e in errors[:20]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        summary.append(f"{where}: {e.get('msg')}")
        clean.append({"field": where, "message": str(e.get("msg")), "type": str(e.get("type"))})
    return 422, "; ".join(summary), clean


def validation_error_frame_parts(exc: ValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    return describe_validation(list(exc.errors(include_url=False)))


def allowed_methods(app: Starlette, scope: Scope) -> list[str]:
    """Every method some route serves at this path. Starlette's own 405 names only the
    first route whose path matched, though several routes (GET and PATCH
    ``/v1/users/me``) may share a path."""
    found: set[str] = set()
    for route in iter_route_contexts(app.routes):
        if route.methods:
            match, _ = route.matches({**scope, "method": "\0"})  # path only: no method fits
            if match is not Match.NONE:
                found |= route.methods
    return sorted(found)


def install(app: FastAPI) -> None:
    @app.exception_handler(TidingsError)
    async def _tidings(_: Request, exc: TidingsError) -> JSONResponse:
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, fields = describe_validation(list(exc.errors()))
        code = "malformed_json" if status == 400 else "invalid_input"
        details = {"errors": fields} if fields else None
        return JSONResponse(error_body(status, code, message, details), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        status, message = exc.status_code, str(exc.detail)
        if status == 400:
            code, message = "malformed_json", MALFORMED_BODY
        elif status == 405:
            code = "method_not_allowed"
            allowed = allowed_methods(request.app, request.scope)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        else:
            code = "not_found" if status == 404 else "http_error"
        return JSONResponse(error_body(status, code, message), status_code=status, headers=headers)

    @app.exception_handler(UnicodeError)
    async def _unicode(_: Request, exc: UnicodeError) -> JSONResponse:
        return JSONResponse(error_body(400, *INVALID_UNICODE), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(500, "internal", "internal error; it was logged, retry later"),
            status_code=500,
        )
