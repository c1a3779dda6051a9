"""The error half of the OpenAPI contract: one ``Error`` schema, and per route every
status it can answer.

Routes name the statuses their services decide (``responses=errors(403, 404)``);
``document`` adds those every operation of a kind can answer: ``401`` where a bearer
token is required, ``400`` / ``413`` where a JSON body is read, ``422`` where anything
is validated, ``503`` wherever an engine is called. The contract test fuzzes
the result (schemathesis), so a status missing here fails it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

ERROR_CODES: dict[int, str] = {
    400: "`invalid_input` (a value the schema cannot judge, e.g. bad base64) or "
    "`malformed_json` (not JSON text in UTF-8)",
    401: "`unauthorized`: missing, malformed, expired or revoked bearer token",
    403: "`forbidden`: authenticated, but not allowed to do this",
    404: "`not_found`",
    409: "`conflict`, `mismatched_devices` (`details.missing` / `details.extra`) or "
    "`id_reused`: the request conflicts with what the server holds",
    410: "`stale_devices` (`details.stale`)",
    413: "`payload_too_large` (`details.limit`)",
    422: "`invalid_input` (the schema; `details.errors` lists the fields) or "
    "`limit_exceeded` (a count limit)",
    429: "`rate_limited`: see `Retry-After` and `details.retry_after`",
    503: "`unavailable`: an engine is down for the moment; retry",
}
"""What each error status means; the code is ``error.code`` of the body."""


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="stable, machine-readable")
    message: str = Field(description="for people; may change")
    details: dict[str, Any] = Field(description="more about this error; `{}` when none")


class Error(BaseModel):
    """Every error response of the API."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: these error statuses, each with the ``Error`` body."""
    found: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        found[status] = {"model": Error, "description": ERROR_CODES[status]}
        if status == 429:
            found[status]["headers"] = {
                "Retry-After": {
                    "description": "whole seconds to wait",
                    "schema": {"type": "integer"},
                }
            }
    return found


def framework_statuses(operation: dict[str, Any]) -> list[int]:
    """The statuses every operation of this kind can answer, whatever its service
    decides: read from the operation's own OpenAPI (bearer security, body, parameters)."""
    statuses = [503]
    if operation.get("security"):
        statuses.append(401)
    if "requestBody" in operation:
        statuses += [400, 413, 422]
    elif operation.get("parameters"):
        statuses.append(422)
    return statuses


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_CODES[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == 429:
        response["headers"] = errors(429)[429]["headers"]
    return response


def document(app: FastAPI, *, skip: Iterable[str] = ()) -> None:
    """Make ``app.openapi()`` give every route its error responses: those it declared
    plus ``framework_statuses``, all with the ``Error`` body (FastAPI's own 422 shape,
    which the API never answers, is replaced). Routes in ``skip`` (health, metrics)
    answer no ``Error``."""
    skipped = set(skip)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = Error.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error_schema.pop("$defs", {}))
        components["Error"] = error_schema
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        for path, operations in schema["paths"].items():
            if path in skipped:
                continue
            for operation in operations.values():
                responses = operation["responses"]
                for status in framework_statuses(operation):
                    responses.setdefault(str(status), _error_response(status))
                if "422" in responses:  # FastAPI's default names HTTPValidationError
                    responses["422"] = _error_response(422)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
