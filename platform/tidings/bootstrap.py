"""The one wiring module: settings -> engines -> services -> app.

Constructors do no I/O; ``Platform.start`` opens the engines and starts the workers
the chosen components need.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import secrets
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Mapping,
)
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from tidings.api.app import create_app as create_api
from tidings.api.app import routers_for
from tidings.api.ops import create_ops_app, ops_routers_for
from tidings.config import COMPONENTS, Settings, up_components
from tidings.core.limitkeys import parse_networks
from tidings.core.limits import DEFAULT_LIMITS
from tidings.core.push import Provider
from tidings.core.pushjob import PushPolicy
from tidings.core.shardmap import ShardMapError, region_topics, single_region
from tidings.engines.embedded.analytics import SqliteAnalyticsStore
from tidings.engines.embedded.blob_routes import blob_router
from tidings.engines.embedded.blobs import FileBlobStore
from tidings.engines.embedded.bus import EmbeddedBus
from tidings.engines.embedded.inbox import SqliteMessageStore
from tidings.engines.embedded.leases import SqliteShardLeases
from tidings.engines.embedded.otp import LoggingOtpSender
from tidings.engines.embedded.presence import MemoryPresenceStore
from tidings.engines.embedded.userstore import SqliteUserStore
from tidings.engines.redis import RedisPresenceStore
from tidings.errors import TidingsError
from tidings.metrics import Metrics
from tidings.ports import (
    AnalyticsStore,
    BlobStore,
    EventBus,
    MessageStore,
    OtpSender,
    PushSender,
    ShardLeases,
    UserStore,
)
from tidings.services.analytics import AnalyticsWorker, EventShipper
from tidings.services.context import Context
from tidings.services.presence import PresenceService
from tidings.services.push import PushWorker
from tidings.services.registry import Services
from tidings.services.shard_leases import LeaseKeeper
from tidings.services.shard_map_file import ShardMapFile
from tidings.tracing import Tracing, otlp_exporter

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


def push_policy(settings: Settings) -> PushPolicy:
    return PushPolicy(
        rate=settings.push_rate,
        burst=settings.push_burst,
        concurrency=settings.push_concurrency,
        max_attempts=settings.push_max_attempts,
        backoff_base_s=settings.push_backoff_base_s,
        collapse_s=settings.push_collapse_s,
    )


def build_push_senders(settings: Settings) -> dict[Provider, PushSender]:
    """One client per configured provider, from ``tidings.engines.<provider>``.

    Imported lazily: a process that pushes through FCM only never loads the APNs client.
    """
    senders: dict[Provider, PushSender] = {}
    for provider in settings.push_provider_list:
        module = importlib.import_module(f"tidings.engines.{provider.value}")
        senders[provider] = cast(PushSender, module.build_sender(settings))
    return senders


@dataclass
class Engines:
    """One engine per port, with what opening and closing them takes."""

    users: UserStore
    messages: MessageStore
    presence: Ephemeral
    """Presence, channels, rate-limit buckets and key-values: one engine, four ports."""
    bus: EventBus
    blobs: BlobStore
    aggregates: AnalyticsStore
    leases: ShardLeases
    starters: list[Callable[[], Awaitable[None]]]
    closers: list[Callable[[], Awaitable[None]]]
    routers: list[APIRouter] = field(default_factory=list)
    """HTTP routes an engine needs served next to media (the embedded blob URLs)."""


Ephemeral = MemoryPresenceStore | RedisPresenceStore
"""The engines of the four ephemeral ports (``PresenceStore``, ``Channels``,
``RateLimiter``, ``KeyValues``)."""


def _presence(settings: Settings, clock: Callable[[], float]) -> Ephemeral:
    if settings.redis_url:
        return RedisPresenceStore.from_url(
            settings.redis_url,
            prefix=f"tidings:{settings.region}:",
            max_connections=settings.redis_max_connections,  # ?max_connections= in the URL wins
            pool_timeout=settings.redis_pool_timeout,  # ?timeout= in the URL wins
        )
    return MemoryPresenceStore(clock)


def embedded_engines(settings: Settings, clock: Callable[[], float]) -> Engines:
    """SQLite, the SQLite-backed bus and local files under ``data_dir``; presence in Redis
    when ``redis_url`` is set (several gateway processes), else in memory."""
    data = settings.data_dir
    bus = EmbeddedBus(data / "bus.db")
    users = SqliteUserStore.at(data / "users.db")
    messages = SqliteMessageStore.at(data / "inbox.db")
    aggregates = SqliteAnalyticsStore.at(data / "analytics.db")
    leases = SqliteShardLeases.at(data / "leases.db")
    presence = _presence(settings, clock)
    blobs = FileBlobStore(data / "blobs", _secret(data / "secret.key"), settings.public_url, clock)
    closers: list[Callable[[], Awaitable[None]]] = [
        bus.close,
        users.close,
        messages.close,
        aggregates.close,
        leases.close,
    ]
    if isinstance(presence, RedisPresenceStore):
        closers.append(presence.close)
    return Engines(
        users=users,
        messages=messages,
        presence=presence,
        bus=bus,
        blobs=blobs,
        aggregates=aggregates,
        leases=leases,
        starters=[bus.start, users.start, messages.start, aggregates.start, leases.start],
        closers=closers,
        routers=[blob_router(blobs)],
    )


def distributed_engines(settings: Settings, clock: Callable[[], float]) -> Engines:
    """Kafka, Cassandra, Redis and S3: what production runs."""
    # Imported here: an embedded platform never loads the drivers.
    from tidings.engines.cassandra import CassandraConfig, CassandraEngine, parse_replication
    from tidings.engines.kafka import KafkaBus
    from tidings.engines.regional_bus import PEER_TIMEOUT_S, RegionalBus, parse_kafka_peers
    from tidings.engines.s3 import S3BlobStore

    if not settings.redis_url:
        raise SystemExit(
            "the distributed engines need Redis: set TIDINGS_REDIS_URL "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
    try:
        replication = parse_replication(settings.cassandra_replication, settings.cassandra_local_dc)
    except ValueError as exc:
        raise SystemExit(f"TIDINGS_CASSANDRA_REPLICATION: {exc}") from exc
    try:
        peers = parse_kafka_peers(settings.kafka_peers)
    except ValueError as exc:
        raise SystemExit(f"TIDINGS_KAFKA_PEERS: {exc}") from exc
    kafka = functools.partial(
        KafkaBus,
        client_id=settings.kafka_client_id,
        replication_factor=settings.kafka_replication_factor,
    )
    local = kafka(settings.kafka_bootstrap)
    bus: KafkaBus | RegionalBus = local
    if peers:
        bus = RegionalBus(
            local,
            {region: kafka(servers, timeout=PEER_TIMEOUT_S) for region, servers in peers.items()},
        )
    cassandra = CassandraEngine(
        CassandraConfig(
            contact_points=tuple(
                h.strip() for h in settings.cassandra_contact_points.split(",") if h.strip()
            ),
            port=settings.cassandra_port,
            local_dc=settings.cassandra_local_dc,
            keyspace=settings.cassandra_keyspace,
            replication=replication,
            username=settings.cassandra_username,
            password=settings.cassandra_password,
            migrate=settings.cassandra_migrate,
            inbox_ttl_s=settings.inbox_ttl_days * 86_400,
        )
    )
    presence = _presence(settings, clock)
    assert isinstance(presence, RedisPresenceStore)
    blobs = S3BlobStore(
        bucket=settings.s3_bucket,
        region=settings.s3_region,
        endpoint=settings.s3_endpoint,
        public_endpoint=settings.s3_public_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        clock=clock,
    )
    return Engines(
        users=cassandra.users,
        messages=cassandra.messages,
        presence=presence,
        bus=bus,
        blobs=blobs,
        aggregates=cassandra.analytics,
        leases=cassandra.leases,
        starters=[bus.start, cassandra.start, blobs.start],
        closers=[bus.close, cassandra.close, blobs.close, presence.close],
    )


@dataclass
class Platform:
    settings: Settings
    services: Services
    engines: Engines
    shipper: EventShipper
    push_senders: Mapping[Provider, PushSender] | None = None
    """Provider clients of the push worker (built from settings by ``create_apps``)."""
    shard_map_file: ShardMapFile | None = None
    lease_keeper: LeaseKeeper | None = None
    """Shard leases of the delivery worker, where a shard map is followed."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, components: Collection[str]) -> None:
        for start in self.engines.starters:
            await start()
        ctx = self.services.ctx
        # Once here for every worker below: they consume and produce only these topics.
        for topic in region_topics(ctx.region):
            await ctx.bus.ensure_topic(topic, ctx.partitions)
        if {"gateway", "router"} & set(components):
            self._spawn(self.services.directory.run(self._stop), "directory changes")
        if "delivery" in components:
            if self.lease_keeper is not None:
                await self.lease_keeper.refresh()  # before the first batch needs them
                self.services.delivery.fence = self.lease_keeper
                self._spawn(self.lease_keeper.run(self._stop), "shard leases")
            self._spawn(self.services.delivery.run(self._stop), "delivery worker")
        if "push" in components and self.push_senders:
            worker = PushWorker(ctx, self.push_senders, push_policy(self.settings))
            self._spawn(worker.run(self._stop), "push worker")
        if "presence" in components:
            self._spawn(PresenceService(ctx).run(self._stop), "presence reaper")
        if "analytics" in components:
            self._spawn(AnalyticsWorker(ctx, ctx.aggregates).run(self._stop), "analytics worker")
        self._spawn(self.shipper.run(self._stop), "analytics shipper")
        if self.shard_map_file is not None:
            self._spawn(self.shard_map_file.run(self._stop), "shard map watch")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.services.router.receipts.close()  # the delivered receipts held
        with contextlib.suppress(TidingsError):
            await self.shipper.flush()  # what the last interval emitted
        for close in reversed(self.engines.closers):
            await close()


def build(
    settings: Settings,
    *,
    otp: OtpSender | None = None,
    clock: Callable[[], float] = time.time,
    push_senders: Mapping[Provider, PushSender] | None = None,
    tracing: Tracing | None = None,
) -> Platform:
    """Engines and services for ``settings`` (``settings.engine`` picks the engine set)."""
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    if otp is None:
        if not settings.dev_mode:
            raise SystemExit(
                "no SMS gateway is configured: set TIDINGS_DEV_MODE=1 to log one-time codes"
            )
        otp = LoggingOtpSender(data / "otp-outbox.jsonl")
    if settings.engine == "distributed":
        engines = distributed_engines(settings, clock)
    else:
        engines = embedded_engines(settings, clock)
    limits = replace(
        DEFAULT_LIMITS,
        max_in_flight=settings.max_in_flight,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
    )
    ctx = Context(
        users=engines.users,
        messages=engines.messages,
        presence=engines.presence,
        channels=engines.presence,
        buckets=engines.presence,
        keys=engines.presence,
        bus=engines.bus,
        blobs=engines.blobs,
        aggregates=engines.aggregates,
        otp=otp,
        clock=clock,
        metrics=Metrics.create(),
        region=settings.region,
        shard_map=single_region(settings.region),
        limits=limits,
        rates=settings.rates,
        partitions=settings.partitions,
        tracing=tracing or Tracing.off(),
    )
    if tracing is not None:
        engines.closers.append(tracing.close)  # last: what the others' shutdown traced
    watch = None
    if settings.shard_map_file is not None:
        watch = ShardMapFile(ctx, settings.shard_map_file)
        try:
            watch.load()
        except ShardMapError as exc:
            raise SystemExit(str(exc)) from exc
    return Platform(
        settings=settings,
        services=Services.build(ctx),
        engines=engines,
        shipper=EventShipper(ctx),
        push_senders=push_senders,
        shard_map_file=watch,
        lease_keeper=(
            None if watch is None else LeaseKeeper(ctx, engines.leases, settings.lease_terms)
        ),
    )


def build_tracing(
    settings: Settings, components: Collection[str], exporter: SpanExporter | None = None
) -> Tracing | None:
    """Tracing of the message path when an exporter or ``otlp_endpoint`` is given.

    With a ratio of 0 the process starts no trace but still records its hops of traces
    other processes started (sampling follows the envelope's parent)."""
    if exporter is None:
        if not settings.otlp_endpoint:
            return None
        exporter = otlp_exporter(settings.otlp_endpoint)
    named = "-".join(c for c in COMPONENTS if c in components)
    service = "tidings" if set(components) >= set(up_components(settings)) else f"tidings-{named}"
    return Tracing.exporting(
        exporter,
        settings.trace_sample_ratio,
        service=service,
        attributes={"tidings.region": settings.region},
    )


@dataclass(frozen=True)
class Apps:
    """What one process serves: the client app (REST, WebSocket, health; its lifespan
    starts and stops the platform) and the operations app (metrics, analytics, health)
    over the same services, each on a port of its own (``server.serve``)."""

    client: FastAPI
    ops: FastAPI


def create_apps(
    settings: Settings,
    *,
    components: Collection[str] | None = None,
    otp: OtpSender | None = None,
    clock: Callable[[], float] = time.time,
    push_senders: Mapping[Provider, PushSender] | None = None,
    span_exporter: SpanExporter | None = None,
) -> Apps:
    """The ASGI apps running ``components`` (default: what ``tidings up`` runs); see
    ``api.app.routers_for`` and ``api.ops.ops_routers_for`` for the routes each serves.
    ``span_exporter`` takes the spans instead of ``settings.otlp_endpoint`` (tests)."""
    if components is None:
        components = COMPONENTS if push_senders else up_components(settings)
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; choose from {COMPONENTS}")
    if "push" in components and push_senders is None and not settings.push_provider_list:
        raise SystemExit(
            "push needs a provider: set TIDINGS_PUSH_PROVIDERS to fcm, apns or fcm,apns "
            "(and the TIDINGS_FCM_* / TIDINGS_APNS_* settings)"
        )
    owned: dict[Provider, PushSender] = {}
    if "push" in components and push_senders is None:
        try:
            owned = build_push_senders(settings)
        except (ValueError, OSError, ImportError) as exc:
            raise SystemExit(f"push is misconfigured: {exc}") from exc
        push_senders = owned
    platform = build(
        settings,
        otp=otp,
        clock=clock,
        push_senders=push_senders,
        tracing=build_tracing(settings, components, span_exporter),
    )
    platform.engines.closers.extend(sender.close for sender in owned.values())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.start(components)
        try:
            yield
        finally:
            await platform.stop()

    routers = routers_for(components)
    if {"gateway", "media"} & set(components):
        routers += platform.engines.routers
    app = create_api(
        platform.services,
        lifespan=lifespan,
        routers=routers,
        inbox_poll_interval=settings.inbox_poll_interval,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )
    app.state.platform = platform
    ops = create_ops_app(platform.services, routers=ops_routers_for(components))
    return Apps(client=app, ops=ops)
