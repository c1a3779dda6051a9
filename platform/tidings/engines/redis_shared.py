"""Many callers' Redis commands in one pipeline: one round trip for a moment's work.

A pipeline costs redis-py a connection checkout, a write, a read loop and a timeout
scope however few commands it carries; on the send path each socket made three a
batch (its rate limit, its dedupe claims, its dedupe states), the delivery worker two
(read-receipt records, wake-ups), and a connecting socket three (the kick of an older
socket, its presence update, the presence change's publish). ``SharedPipelines.run``
queues one caller's commands; every caller of the same turn of the event loop goes in
one pipeline (no timer: a lone caller's commands leave on the next turn, as before),
and each gets its own replies back. Commands keep their order, so one caller's
sequence runs as it wrote it; a caller whose replies hold an error reply gets that
error, the others their replies; a failed round trip fails every caller in it.

Not for ``MULTI``/``EXEC`` transactions: what must apply atomically goes in as one
script (``redis_scripts``: rate-limit takes, presence changes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis

Fill = Callable[[Any], None]
"""Queues one caller's commands on the pipeline it is given (``pipe.set(...)``...)."""


class SharedPipelines:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._waiting: list[tuple[Fill, asyncio.Future[list[Any]]]] = []
        self._round_trips: set[asyncio.Future[None]] = set()
        """Pipelines under way (held, so none is garbage-collected mid-way)."""

    async def run(self, fill: Fill) -> list[Any]:
        """The replies to the commands ``fill`` queues, in order."""
        loop = asyncio.get_running_loop()
        replies: asyncio.Future[list[Any]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((fill, replies))
        return await replies

    def _flush(self) -> None:
        callers, self._waiting = self._waiting, []
        pipe = self._redis.pipeline(transaction=False)
        slices: list[tuple[int, int, asyncio.Future[list[Any]]]] = []
        for fill, replies in callers:
            start = len(pipe.command_stack)
            try:
                fill(pipe)
            except Exception as exc:  # a caller's own bad arguments: its error alone
                del pipe.command_stack[start:]
                replies.set_exception(exc)
                continue
            slices.append((start, len(pipe.command_stack), replies))
        if not slices:
            return
        trip = asyncio.ensure_future(self._execute(pipe, slices))
        self._round_trips.add(trip)
        trip.add_done_callback(self._round_trips.discard)

    @staticmethod
    async def _execute(pipe: Any, slices: list[tuple[int, int, asyncio.Future[list[Any]]]]) -> None:
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, _, waiter in slices:
                if not waiter.done():
                    waiter.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for start, end, waiter in slices:
            if waiter.done():  # its caller was cancelled
                continue
            mine = replies[start:end]
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is None:
                waiter.set_result(mine)
            else:
                waiter.set_exception(error)
