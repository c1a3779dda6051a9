"""The client app: REST routes, the WebSocket, error handling, health and the API's
documentation pages (metrics and analytics are the operations app's, ``api.ops``, on a
port of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI

from tidings import __version__
from tidings.api import contract, docs, errors, ws
from tidings.api.middleware import BodyLimit, HttpMetrics
from tidings.api.ops import HEALTH_PATHS, health_router
from tidings.api.routes import auth, groups, keys, media, messages, regions, users
from tidings.core.limitkeys import Network
from tidings.core.limits import INBOX_POLL_INTERVAL_S
from tidings.services.gateway import CONNECT_SETUPS_AT_ONCE
from tidings.services.registry import Services

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def routers_for(components: Collection[str]) -> list[APIRouter]:
    """The HTTP routes each component serves. The gateway is the whole client edge
    (REST + WebSocket, sends through its in-process router); ``router`` and ``media``
    serve their slice of it, so an ingress can scale those paths separately. Workers
    (delivery, push, presence) serve health and metrics only."""
    found: list[APIRouter] = []
    if "gateway" in components:
        found += [auth.router, keys.router, users.router, groups.router, messages.router]
        found += [media.router, regions.router, ws.router]
    if "router" in components:
        found.append(messages.router)
    if "media" in components:
        found.append(media.router)
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
    """Build the client app around ready-made services, serving ``routers`` plus
    health and the documentation pages (``/docs``, ``/redoc``; all offline)."""
    app_class = ws.SocketFirstApp if ws.router in routers else FastAPI
    app = app_class(
        title="Tidings",
        version=__version__,
        description="End-to-end encrypted messaging. The server only sees ciphertext.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their files from a CDN: see api.docs
        redoc_url=None,
    )
    app.state.services = services
    app.state.inbox_poll_interval = inbox_poll_interval
    app.state.connect_gate = asyncio.Semaphore(CONNECT_SETUPS_AT_ONCE)
    app.state.trusted_proxies = tuple(trusted_proxies)
    errors.install(app)
    for router in routers:
        app.include_router(router)

    app.include_router(health_router(services))
    docs.serve(app)

    contract.document(app, skip=HEALTH_PATHS)
    limits = services.ctx.limits
    app.add_middleware(BodyLimit, limit=limits.http_body_bytes, exempt=("/v1/blobs/",))
    app.add_middleware(HttpMetrics, metrics=services.ctx.metrics)
    return app
