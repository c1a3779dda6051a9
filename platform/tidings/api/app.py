"""The FastAPI application: routes, error handling, health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from tidings import __version__
from tidings.api import contract, errors, ws
from tidings.api.middleware import BodyLimit, HttpMetrics
from tidings.api.routes import analytics, auth, groups, keys, media, messages, users
from tidings.core.limitkeys import Network
from tidings.core.limits import INBOX_POLL_INTERVAL_S
from tidings.errors import TidingsError
from tidings.services.gateway import CONNECT_SETUPS_AT_ONCE
from tidings.services.registry import Services

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

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def routers_for(components: Collection[str]) -> list[APIRouter]:
    """The HTTP routes each component serves. The gateway is the whole client edge
    (REST + WebSocket, sends through its in-process router); ``router`` and ``media``
    serve their slice of it, so an ingress can scale those paths separately. Workers
    (delivery, push, presence) serve health and metrics only."""
    found: list[APIRouter] = []
    if "gateway" in components:
        found += [auth.router, keys.router, users.router, groups.router, messages.router]
        found += [media.router, ws.router]
    if "router" in components:
        found.append(messages.router)
    if "media" in components:
        found.append(media.router)
    if "analytics" in components:
        found.append(analytics.router)
    unique: list[APIRouter] = []
    for router in found:
        if all(router is not seen for seen in unique):
            unique.append(router)
    return unique


def create_app(
    services: Services,
    *,
    lifespan: Lifespan | None = None,
    routers: Sequence[APIRouter] = (),
    inbox_poll_interval: float = INBOX_POLL_INTERVAL_S,
    trusted_proxies: Sequence[Network] = (),
) -> FastAPI:
    """Build the app around ready-made services, serving ``routers`` plus health and
    metrics."""
    app = FastAPI(
        title="Tidings",
        version=__version__,
        description="End-to-end encrypted messaging. The server only sees ciphertext.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.inbox_poll_interval = inbox_poll_interval
    app.state.connect_gate = asyncio.Semaphore(CONNECT_SETUPS_AT_ONCE)
    app.state.trusted_proxies = tuple(trusted_proxies)
    errors.install(app)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], response_model=None, responses=READYZ_RESPONSES)
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

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        return Response(
            generate_latest(services.ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    contract.document(app, skip=("/healthz", "/readyz", "/metrics"))
    limits = services.ctx.limits
    app.add_middleware(BodyLimit, limit=limits.http_body_bytes, exempt=("/v1/blobs/",))
    app.add_middleware(HttpMetrics, metrics=services.ctx.metrics)
    if ws.router in routers:
        app.add_middleware(ws.WebSocketFastPath)  # outermost: sockets skip the rest
    return app
