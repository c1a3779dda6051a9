"""The delivery worker: bus -> inbox -> notify (or push job).

Order per batch: forward what a newer shard map moved to another region, store every
other envelope, notify (wake-up or push job), then commit offsets. A crash before the
commit replays the batch: the inbox ignores known server ids, clients dedupe a repeated
forward by server id, and a repeated push job is collapsed by the push worker's
per-device window.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter

from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.routing import moved_away
from tidings.core.shardmap import consumer_group, deliveries_topic, push_topic, receipts_topic
from tidings.ports import Record
from tidings.services.consuming import consume
from tidings.services.context import Context, device_channel, produce_routed

log = logging.getLogger("tidings.delivery")

WAKE = json.dumps({"t": "wake"}).encode()


class DeliveryWorker:
    def __init__(self, ctx: Context, batch: int = 256) -> None:
        self.ctx, self.batch = ctx, batch
        self.topic = deliveries_topic(ctx.region)
        self.receipts = receipts_topic(ctx.region)

    async def run(self, stop: asyncio.Event) -> None:
        ctx = self.ctx
        await asyncio.gather(
            consume(
                ctx.bus,
                self.topic,
                consumer_group(ctx.region, "delivery"),
                self.handle,
                stop,
                batch=self.batch,
                what="delivery",
            ),
            consume(
                ctx.bus,
                self.receipts,
                consumer_group(ctx.region, "receipts"),
                self.handle,
                stop,
                batch=self.batch,
                what="receipts",
            ),
        )

    async def handle(self, records: list[Record]) -> None:
        """Store the batch, then notify; the caller commits after this returns."""
        ctx = self.ctx
        started = time.perf_counter()
        envelopes, moved = moved_away(
            ctx.shard_map, ctx.region, (Envelope.decode(r.value) for r in records)
        )
        if moved:
            # Fenced: this region no longer owns these recipients (a failover moved
            # their shards); the owner delivers them, so nothing accepted is lost.
            await produce_routed(ctx, moved)
            for region, count in Counter(
                ctx.shard_map.owner_region(e.recipient_user) for e in moved
            ).items():
                ctx.metrics.envelopes_forwarded.labels(region).inc(count)
        stored = [
            (e.recipient_user, e.recipient_device, e.server_id, e.encode())
            for e in envelopes
            if not e.ephemeral
        ]
        if stored:
            ctx.metrics.inbox_writes.inc(await ctx.messages.append(stored))
            now = ctx.now_ms()
            for e in envelopes:
                if not e.ephemeral:
                    ctx.emit("stored", e.kind.value, latency_ms=max(0, now - e.timestamp))
        for envelope in envelopes:
            await self._notify(envelope)
        ctx.metrics.delivery_batch_seconds.observe(time.perf_counter() - started)

    async def _notify(self, envelope: Envelope) -> None:
        ctx = self.ctx
        channel = device_channel(envelope.recipient_user, envelope.recipient_device)
        if envelope.ephemeral:
            message = json.dumps({"t": "event", "envelope": envelope.to_client()}).encode()
            await ctx.presence.publish(channel, message)
            return
        listeners = await ctx.presence.publish(channel, WAKE)
        if listeners == 0 and envelope.kind is EnvelopeKind.MESSAGE:
            # Offline: a push job that carries no content, only whom to wake.
            job = {
                "user": envelope.recipient_user,
                "device": envelope.recipient_device,
                "server_id": envelope.server_id,
            }
            await ctx.bus.produce(
                push_topic(ctx.region), [(envelope.recipient_user, json.dumps(job).encode())]
            )
            ctx.metrics.push_jobs.inc()
