"""The loop every bus worker runs: poll a batch, handle it until done, then commit
(while the next batch is polled).

A batch is never skipped and never committed unhandled: a retryable failure pauses and
handles the same batch again; a commit refused after a rebalance is left to the new
owner of the partitions (handlers are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from tidings.aio import wait_event
from tidings.errors import TidingsError
from tidings.ports import Consumer, EventBus, Record

log = logging.getLogger("tidings.consuming")

Handler = Callable[[list[Record]], Awaitable[None]]


async def retrying(work: Callable[[], Awaitable[None]], stop: asyncio.Event, what: str) -> bool:
    """Run ``work`` until it succeeds (True) or ``stop`` is set (False), pausing after
    each retryable failure (backoff 0.5 s doubling to 10 s)."""
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
    the new owner gets the records again."""
    try:
        await consumer.commit(records)
    except TidingsError as exc:
        if not exc.retryable:
            raise
        log.warning("commit refused, the records will be handled again: %s", exc.message)


async def consume(
    bus: EventBus,
    topic: str,
    group: str,
    handle: Handler,
    stop: asyncio.Event,
    *,
    batch: int,
    what: str,
) -> None:
    """Poll ``topic`` in ``group`` and hand each batch to ``handle`` until ``stop``."""
    consumer = bus.consumer(topic, group)
    log.info("%s consuming %s as %s", what, topic, group)
    # A batch's commit runs while the next batch is polled (the consumer's positions
    # are its own, not the committed offsets): the commit's round trip is off the path
    # of every record behind it. One commit at a time, so they land in order.
    committing: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            try:
                records = await consumer.poll(batch, timeout=0.5)
            except TidingsError as exc:
                if not exc.retryable:
                    raise
                log.warning("polling %s failed, retrying: %s", topic, exc.message)
                await wait_event(stop, 1.0)
                continue
            if records and await retrying(partial(handle, records), stop, what):
                if committing is not None:
                    await committing
                committing = asyncio.create_task(commit(consumer, records))
    finally:
        if committing is not None:
            await asyncio.shield(committing)
        await consumer.close()
