"""The operations app: what operators and their tools read, never clients.

Served on a port of its own (``TIDINGS_OPS_PORT``), apart from the client port, so an
ingress in front of the API cannot expose it: ``/metrics`` (Prometheus), in the
analytics process ``/analytics/daily/{day}``, and ``/healthz`` and ``/readyz``, which
the client port serves too (a probe may use either).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from tidings import __version__
from tidings.api import errors
from tidings.api.routes import analytics
from tidings.errors import TidingsError
from tidings.services.registry import Services

HEALTH_PATHS = ("/healthz", "/readyz")

READYZ_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": {"status": "ready"}}}},
    503: {
        "description": "an engine does not answer: `failed` names each with its reason",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["status", "failed"],
                    "properties": {
                        "status": {"const": "unavailable"},
                        "failed": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                }
            }
        },
    },
}


def health_router(services: Services) -> APIRouter:
    """``/healthz`` (the process is up) and ``/readyz`` (every engine answers)."""
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None, responses=READYZ_RESPONSES)
    async def readyz() -> Any:
        """Every engine answers."""
        ctx = services.ctx
        checks: dict[str, Any] = {
            "users": ctx.users.ping,
            "messages": ctx.messages.ping,
            "presence": ctx.presence.ping,
            "bus": ctx.bus.ping,
            "blobs": ctx.blobs.ping,
            "aggregates": ctx.aggregates.ping,
        }
        failed = {}
        for name, ping in checks.items():
            try:
                await ping()
            except TidingsError as exc:
                failed[name] = exc.message
        if failed:
            return JSONResponse({"status": "unavailable", "failed": failed}, status_code=503)
        return {"status": "ready"}

    return router


def ops_routers_for(components: Collection[str]) -> list[APIRouter]:
    """The operations routes a process serves beside health and metrics."""
    return [analytics.router] if "analytics" in components else []


def create_ops_app(services: Services, *, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """Health, readiness, ``/metrics`` and ``routers``; errors in the API's shape, no
    OpenAPI (it documents the client API)."""
    app = FastAPI(
        title="Tidings operations",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.services = services
    errors.install(app)
    app.include_router(health_router(services))
    for router in routers:
        app.include_router(router)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        return Response(
            generate_latest(services.ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    return app
