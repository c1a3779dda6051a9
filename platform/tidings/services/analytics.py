"""Analytics: ship buffered metadata events to the bus, and fold them into metrics and
daily aggregates.

Shipping is best effort (a killed process loses at most one flush interval of events);
the worker commits offsets after the aggregates are written, so a crash between the two
counts one batch twice. Both are fine for statistics and keep analytics off the
message path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from tidings.aio import wait_event
from tidings.core.analytics import daily_counters, decode_batch, encode_batch, totals_by_kind
from tidings.core.shardmap import analytics_topic, consumer_group
from tidings.errors import TidingsError
from tidings.ports import AnalyticsStore, Record
from tidings.services.consuming import consume
from tidings.services.context import Context

log = logging.getLogger("tidings.analytics")

BATCH = 1000


class EventShipper:
    """Moves ``ctx.events`` to the analytics topic every ``interval`` seconds."""

    def __init__(self, ctx: Context, interval: float = 1.0) -> None:
        self.ctx, self.interval = ctx, interval
        self.topic = analytics_topic(ctx.region)
        # Spreads processes over partitions; one process's batches stay in order.
        self.key = f"{socket.gethostname()}:{os.getpid()}"

    async def flush(self) -> None:
        events = self.ctx.events
        while len(events):
            batch = events.drain(BATCH)
            try:
                await self.ctx.bus.produce(self.topic, [(self.key, encode_batch(batch))])
            except TidingsError:
                events.requeue(batch)
                raise

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await wait_event(stop, self.interval)
            try:
                await self.flush()
            except TidingsError as exc:
                if not exc.retryable or stop.is_set():
                    raise
                log.warning("analytics events kept for the next flush: %s", exc.message)


def region_day(region: str, day: str) -> str:
    """The aggregates key of one region's day: regions may share a keyspace."""
    return f"{region}/{day}"


class AnalyticsWorker:
    def __init__(self, ctx: Context, store: AnalyticsStore) -> None:
        self.ctx, self.store = ctx, store
        self.topic = analytics_topic(ctx.region)

    async def handle(self, values: list[bytes]) -> None:
        metrics = self.ctx.metrics
        events = []
        for value in values:
            found, skipped = decode_batch(value)
            events.extend(found)
            metrics.analytics_skipped.inc(skipped)
        region = self.ctx.region
        sums = totals_by_kind(events)
        await self.store.add(
            {(region_day(region, day), name): n for (day, name), n in daily_counters(sums).items()}
        )
        for (_, name, kind), t in sums.items():  # each series looked up once per batch
            metrics.analytics_events.labels(name, kind).inc(t.count)
            if t.size:
                metrics.analytics_bytes.labels(name, kind).inc(t.size)
        latencies: dict[str, list[float]] = {}
        for e in events:
            if e.latency_ms is not None:
                latencies.setdefault(e.name, []).append(e.latency_ms / 1000)
        for name, seconds in latencies.items():
            histogram = metrics.analytics_latency.labels(name)
            for latency in seconds:
                histogram.observe(latency)

    async def run(self, stop: asyncio.Event) -> None:
        ctx = self.ctx
        group = consumer_group(ctx.region, "analytics")
        await consume(ctx.bus, self.topic, group, self._batch, stop, batch=BATCH, what="analytics")

    async def _batch(self, records: list[Record]) -> None:
        await self.handle([r.value for r in records])
