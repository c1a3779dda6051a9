"""The delivery worker: bus -> inbox -> notify (or push job).

Order per batch: sort by shard lease where regions share the data layer (``shard_leases``:
wait while nobody is known to hold a shard, forward what another region holds), forward
what a newer shard map moved to another region, store every
other envelope, record what its recipients may send ``read`` receipts for, notify
(wake-up or push job), then commit offsets. A crash before the
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

from tidings.core import jsoncodec
from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.relationships import received_records
from tidings.core.routing import moved_away
from tidings.core.shardmap import (
    ShardMap,
    consumer_group,
    deliveries_topic,
    push_topic,
    receipts_topic,
)
from tidings.ports import Record
from tidings.services.consuming import consume
from tidings.services.context import Context, device_channel, produce_routed
from tidings.services.shard_leases import LeaseKeeper

log = logging.getLogger("tidings.delivery")

WAKE = json.dumps({"t": "wake"}).encode()


class DeliveryWorker:
    def __init__(self, ctx: Context, batch: int = 256, lanes: int = 1) -> None:
        self.ctx, self.batch, self.lanes = ctx, batch, lanes
        self.fence: LeaseKeeper | None = None
        """Set where regions share the data layer (a shard map is followed)."""
        self.topic = deliveries_topic(ctx.region)
        self.receipts = receipts_topic(ctx.region)

    async def run(self, stop: asyncio.Event) -> None:
        """``lanes`` consumers per topic, each a member of the group with its share of the
        partitions: one lane's store round trip never holds up the others'."""
        ctx = self.ctx
        await asyncio.gather(
            *(
                consume(
                    ctx.bus,
                    topic,
                    consumer_group(ctx.region, worker),
                    self.handle,
                    stop,
                    batch=self.batch,
                    what=worker,
                )
                for topic, worker in ((self.topic, "delivery"), (self.receipts, "receipts"))
                for _ in range(self.lanes)
            )
        )

    async def handle(self, records: list[Record]) -> None:
        """Store the batch, then notify; the caller commits after this returns."""
        ctx = self.ctx
        started = time.perf_counter()
        decoded = [Envelope.decode(r.value) for r in records]
        trace = ctx.tracing.delivering(decoded)  # None unless an envelope carries a trace
        # The inbox keeps the bytes the router encoded: each envelope is encoded once.
        raw = {id(e): r.value for e, r in zip(decoded, records, strict=True)}
        envelopes, moved = moved_away(ctx.shard_map, ctx.region, decoded)
        if self.fence is not None:
            # The data layer's word over the map's: a shard this process holds no lease
            # on is not stored here (raises, and the batch waits, when nobody is known
            # to hold it), and one another region holds goes there.
            fenced = await self.fence.sort(envelopes)
            envelopes = fenced.store
            if fenced.forward:
                await self._forward(fenced.forward, fenced.forwarding_map(ctx.shard_map))
        if moved:
            # Fenced: this region no longer owns these recipients (a failover moved
            # their shards); the owner delivers them, so nothing accepted is lost.
            await self._forward(moved, ctx.shard_map)
        stored = [
            (e.recipient_user, e.recipient_device, e.server_id, raw[id(e)])
            for e in envelopes
            if not e.ephemeral
        ]
        if stored:
            ctx.metrics.inbox_writes.inc(await ctx.messages.append(stored))
            # What the recipients may now send ``read`` receipts for, written before
            # they are woken to fetch it: one write for the batch.
            await ctx.keys.set_many(received_records(e for e in envelopes if not e.ephemeral))
            if trace is not None:
                trace.stored()
            now = ctx.now_ms()
            for e in envelopes:
                if not e.ephemeral:
                    ctx.emit("stored", e.kind.value, latency_ms=max(0, now - e.timestamp))
        await self._notify(envelopes)
        if trace is not None:
            trace.woken()
        ctx.metrics.delivery_batch_seconds.observe(time.perf_counter() - started)

    async def _forward(self, envelopes: list[Envelope], shard_map: ShardMap) -> None:
        await produce_routed(self.ctx, envelopes, shard_map)
        for region, count in Counter(
            shard_map.owner_region(e.recipient_user) for e in envelopes
        ).items():
            self.ctx.metrics.envelopes_forwarded.labels(region).inc(count)

    async def _notify(self, envelopes: list[Envelope]) -> None:
        """Wake each recipient device once per batch (typing goes as the event itself),
        all in one round; a stored message nobody listened for becomes a push job."""
        ctx = self.ctx
        wakes: dict[str, int] = {}
        messages: list[tuple[str, bytes]] = []
        for e in envelopes:
            channel = device_channel(e.recipient_user, e.recipient_device)
            if e.ephemeral:
                messages.append((channel, _event(e)))
            elif channel not in wakes:
                wakes[channel] = len(messages)
                messages.append((channel, WAKE))
        if not messages:
            return
        listeners = await ctx.channels.publish_many(messages)
        jobs = [
            # Offline: a push job that carries no content, only whom to wake.
            (e.recipient_user, _push_job(e))
            for e in envelopes
            if not e.ephemeral
            and e.kind is EnvelopeKind.MESSAGE
            and listeners[wakes[device_channel(e.recipient_user, e.recipient_device)]] == 0
        ]
        if jobs:
            await ctx.bus.produce(push_topic(ctx.region), jobs)
            ctx.metrics.push_jobs.inc(len(jobs))


def _push_job(envelope: Envelope) -> bytes:
    job = {
        "user": envelope.recipient_user,
        "device": envelope.recipient_device,
        "server_id": envelope.server_id,
    }
    return json.dumps(job).encode()


def _event(envelope: Envelope) -> bytes:
    return jsoncodec.dumps({"t": "event", "envelope": envelope.to_client()})
