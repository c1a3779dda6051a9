"""What every service is handed: the ports, the clock, limits and metrics."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tidings.core.analytics import Event, EventBuffer
from tidings.core.envelopes import Envelope
from tidings.core.limits import DEFAULT_LIMITS, DEFAULT_RATES, Limits, RateLimits
from tidings.core.ratelimit import Decision, Limit
from tidings.core.routing import routed
from tidings.core.shardmap import ShardMap, single_region
from tidings.errors import RateLimited, TidingsError
from tidings.metrics import Metrics
from tidings.ports import (
    Accounts,
    AnalyticsStore,
    BlobStore,
    Channels,
    Clock,
    Contacts,
    Devices,
    EventBus,
    Groups,
    KeyValues,
    MessageStore,
    OtpSender,
    PresenceStore,
    PublicKeys,
    PushTokens,
    RateLimiter,
    Sessions,
    UserStore,
)
from tidings.tracing import Tracing


@dataclass(frozen=True)
class Principal:
    """The authenticated device behind a request."""

    user_id: str
    device_id: int


@dataclass
class Context:
    users: UserStore
    messages: MessageStore
    presence: PresenceStore
    channels: Channels
    buckets: RateLimiter
    keys: KeyValues
    bus: EventBus
    blobs: BlobStore
    aggregates: AnalyticsStore
    otp: OtpSender
    clock: Clock
    metrics: Metrics
    region: str = "local"
    shard_map: ShardMap = field(default_factory=lambda: single_region("local"))
    limits: Limits = DEFAULT_LIMITS
    rates: RateLimits = DEFAULT_RATES
    token_bytes: Callable[[int], bytes] = secrets.token_bytes
    partitions: int = 8
    events: EventBuffer = field(default_factory=EventBuffer)
    """Analytics events waiting to be shipped (see ``services.analytics``)."""
    tracing: Tracing = field(default_factory=Tracing.off)
    """Traces of the message path (``tidings.tracing``); off unless configured."""

    # The user store's parts: one engine implements them all, each service uses its own.
    @property
    def accounts(self) -> Accounts:
        return self.users

    @property
    def devices(self) -> Devices:
        return self.users

    @property
    def push_tokens(self) -> PushTokens:
        return self.users

    @property
    def sessions(self) -> Sessions:
        return self.users

    @property
    def public_keys(self) -> PublicKeys:
        return self.users

    @property
    def contacts(self) -> Contacts:
        return self.users

    @property
    def groups(self) -> Groups:
        return self.users

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def emit(
        self, name: str, kind: str, *, count: int = 1, size: int = 0, latency_ms: int | None = None
    ) -> None:
        """Record a metadata-only analytics event (never content or identifiers)."""
        self.events.emit(Event(name, kind, self.now_ms(), count, size, latency_ms))

    async def limit(self, name: str, key: str, limit: Limit, cost: float = 1.0) -> None:
        """Take from the ``name`` bucket of ``key`` or raise ``RateLimited``."""
        decision = await self.take(name, key, limit, cost)
        if not decision.allowed:
            raise self.refusal(name, decision)

    async def take(self, name: str, key: str, limit: Limit, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from the ``name`` bucket of ``key`` if it holds them."""
        return await self.buckets.take_token(f"rl:{name}:{key}", limit, self.clock(), cost)

    def refusal(self, name: str, decision: Decision, count: int = 1) -> RateLimited:
        """The error for ``count`` requests the ``name`` bucket refused."""
        self.metrics.rate_limited.labels(name).inc(count)
        return RateLimited(
            f"{name} rate limit reached; retry after {decision.retry_after:.1f}s",
            retry_after=decision.retry_after,
        )


async def produce_routed(
    ctx: Context, envelopes: Sequence[Envelope], shard_map: ShardMap | None = None
) -> None:
    """Produce ``envelopes`` to their recipients' owning regions (``core.routing``) by
    ``shard_map`` (the context's by default); raises the first failure."""
    for error in await produce_routed_each(ctx, envelopes, shard_map):
        if error is not None:
            raise error


async def produce_routed_each(
    ctx: Context, envelopes: Sequence[Envelope], shard_map: ShardMap | None = None
) -> list[TidingsError | None]:
    """``produce_routed``, each topic produced at once beside the others; returns, per
    envelope, the error of its topic (None: produced). A region that cannot be reached
    then fails only what was routed to it."""

    async def one(topic: str, records: list[tuple[str, bytes]]) -> TidingsError | None:
        try:
            await ctx.bus.produce(topic, records)
        except TidingsError as exc:
            return exc
        ctx.metrics.envelopes_produced.labels(topic).inc(len(records))
        return None

    by_topic = routed(shard_map or ctx.shard_map, envelopes)
    outcomes = await asyncio.gather(
        *(one(topic, [record for _, record in items]) for topic, items in by_topic.items())
    )
    errors: list[TidingsError | None] = [None] * len(envelopes)
    for items, error in zip(by_topic.values(), outcomes, strict=True):
        for index, _ in items:
            errors[index] = error
    return errors


def device_channel(user_id: str, device_id: int) -> str:
    return f"device:{user_id}:{device_id}"


def presence_channel(user_id: str) -> str:
    return f"presence:{user_id}"
