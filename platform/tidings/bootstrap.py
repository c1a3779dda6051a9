"""The one wiring module: settings -> engines -> services -> app.

Constructors do no I/O; ``Platform.start`` opens the engines and starts the workers
the chosen components need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from tidings.aio import wait_event
from tidings.api.app import create_app as create_api
from tidings.config import COMPONENTS, Settings
from tidings.core.limits import DEFAULT_LIMITS
from tidings.core.shardmap import deliveries_topic, push_topic, single_region
from tidings.engines.embedded.blob_routes import blob_router
from tidings.engines.embedded.blobs import FileBlobStore
from tidings.engines.embedded.bus import EmbeddedBus
from tidings.engines.embedded.inbox import SqliteMessageStore
from tidings.engines.embedded.otp import LoggingOtpSender
from tidings.engines.embedded.presence import MemoryPresenceStore
from tidings.engines.embedded.userstore import SqliteUserStore
from tidings.metrics import Metrics
from tidings.ports import OtpSender
from tidings.services.context import Context
from tidings.services.registry import Services

log = logging.getLogger("tidings")


def _secret(path: Path) -> bytes:
    """A per-installation signing key, created once (survives restarts)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
    return path.read_bytes()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.critical("%s stopped: %r; restart the process", task.get_name(), exc, exc_info=exc)


@dataclass
class Platform:
    settings: Settings
    services: Services
    starters: list[Callable[[], Awaitable[None]]]
    closers: list[Callable[[], Awaitable[None]]]
    routers: list[APIRouter]
    sweep: Callable[[], None]
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, components: Collection[str]) -> None:
        for start in self.starters:
            await start()
        ctx = self.services.ctx
        await ctx.bus.ensure_topic(deliveries_topic(ctx.region), ctx.partitions)
        await ctx.bus.ensure_topic(push_topic(ctx.region), ctx.partitions)
        if "delivery" in components:
            self._spawn(self.services.delivery.run(self._stop), "delivery worker")
        self._spawn(self._sweeper(), "presence sweeper")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    async def _sweeper(self) -> None:
        while not self._stop.is_set():
            await wait_event(self._stop, 30.0)
            self.sweep()

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for close in reversed(self.closers):
            await close()


def build(
    settings: Settings, *, otp: OtpSender | None = None, clock: Callable[[], float] = time.time
) -> Platform:
    """Engines and services for ``settings`` (embedded engines; real ones arrive later)."""
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    if otp is None:
        if not settings.dev_mode:
            raise SystemExit(
                "no SMS gateway is configured: set TIDINGS_DEV_MODE=1 to log one-time codes"
            )
        otp = LoggingOtpSender(data / "otp-outbox.jsonl")
    bus = EmbeddedBus(data / "bus.db")
    users = SqliteUserStore.at(data / "users.db")
    messages = SqliteMessageStore.at(data / "inbox.db")
    presence = MemoryPresenceStore(clock)
    blobs = FileBlobStore(data / "blobs", _secret(data / "secret.key"), settings.public_url, clock)
    limits = replace(
        DEFAULT_LIMITS,
        max_in_flight=settings.max_in_flight,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
    )
    ctx = Context(
        users=users,
        messages=messages,
        presence=presence,
        bus=bus,
        blobs=blobs,
        otp=otp,
        clock=clock,
        metrics=Metrics.create(),
        region=settings.region,
        shard_map=single_region(settings.region),
        limits=limits,
        partitions=settings.partitions,
    )
    return Platform(
        settings=settings,
        services=Services.build(ctx),
        starters=[bus.start, users.start, messages.start],
        closers=[bus.close, users.close, messages.close],
        routers=[blob_router(blobs)],
        sweep=presence.sweep,
    )


def create_app(
    settings: Settings,
    *,
    components: Collection[str] = COMPONENTS,
    otp: OtpSender | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The ASGI app running ``components`` (gateway: REST + WebSocket; delivery: worker)."""
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; choose from {COMPONENTS}")
    platform = build(settings, otp=otp, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.start(components)
        try:
            yield
        finally:
            await platform.stop()

    app = create_api(
        platform.services,
        lifespan=lifespan,
        extra_routers=platform.routers,
        inbox_poll_interval=settings.inbox_poll_interval,
        api="gateway" in components,
    )
    app.state.platform = platform
    return app
