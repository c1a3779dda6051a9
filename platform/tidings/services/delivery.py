"""The delivery worker: bus -> inbox -> notify (or push job).

Order per batch: store every envelope, then commit offsets, then notify. A crash
before the commit replays the batch (the inbox ignores known server ids); a crash
after it loses only wake-ups, which gateways repair by polling the inbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from tidings.aio import wait_event
from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.shardmap import consumer_group, deliveries_topic, push_topic
from tidings.errors import TidingsError
from tidings.ports import Consumer, Record
from tidings.services.context import Context, device_channel

log = logging.getLogger("tidings.delivery")

WAKE = json.dumps({"t": "wake"}).encode()


async def retrying(work: Callable[[], Awaitable[None]], stop: asyncio.Event, what: str) -> bool:
    """Run ``work`` until it succeeds (True) or ``stop`` is set (False), pausing after
    each retryable failure: a batch is never skipped, and never committed unhandled."""
    pause = 0.5
    while not stop.is_set():
        try:
            await work()
            return True
        except TidingsError as exc:
            if not exc.retryable:
                raise
            log.warning("%s batch failed, retrying in %.1fs: %s", what, pause, exc.message)
            await wait_event(stop, pause)
            pause = min(pause * 2, 10.0)
    return False


async def commit(consumer: Consumer, records: Sequence[Record]) -> None:
    """Commit; a refused commit (the partitions moved in a rebalance) is not an error:
    the new owner gets the records again and the inbox ignores what it already has."""
    try:
        await consumer.commit(records)
    except TidingsError as exc:
        if not exc.retryable:
            raise
        log.warning("commit refused, the records will be handled again: %s", exc.message)


class DeliveryWorker:
    def __init__(self, ctx: Context, batch: int = 256) -> None:
        self.ctx, self.batch = ctx, batch
        self.topic = deliveries_topic(ctx.region)

    async def run(self, stop: asyncio.Event) -> None:
        ctx = self.ctx
        await ctx.bus.ensure_topic(self.topic, ctx.partitions)
        await ctx.bus.ensure_topic(push_topic(ctx.region), ctx.partitions)
        consumer = ctx.bus.consumer(self.topic, consumer_group(ctx.region, "delivery"))
        log.info("delivery worker consuming %s", self.topic)
        try:
            while not stop.is_set():
                try:
                    records = await consumer.poll(self.batch, timeout=0.5)
                except TidingsError as exc:
                    if not exc.retryable:
                        raise
                    log.warning("polling %s failed, retrying: %s", self.topic, exc.message)
                    await wait_event(stop, 1.0)
                    continue
                if records and await retrying(partial(self.handle, records), stop, "delivery"):
                    await commit(consumer, records)
        finally:
            await consumer.close()

    async def handle(self, records: list[Record]) -> None:
        """Store the batch, then notify; the caller commits after this returns."""
        ctx = self.ctx
        started = time.perf_counter()
        envelopes = [Envelope.decode(r.value) for r in records]
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
