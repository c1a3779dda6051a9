"""A socket's acks, recorded beside its other frames.

Acks do not hold up the sends behind them: the gateway hands each run of acks it reads
to ``AckRecorder.add`` and goes on. One loop records them: the acks read while one inbox
write is under way go together in the next (one write, one ``delivered`` receipt per
sender), since a receipt per run of acks would multiply the receipts a sender gets back.
Only what must follow the acks (a ping's answer, a read receipt, the pump's re-read
from the inbox's start) waits for those read before it (``recorded_so_far``, ``busy``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

Record = Callable[[list[str]], Awaitable[None]]
"""Records one batch of acked server ids (an inbox write and its receipts)."""
Start = Callable[[Coroutine[Any, Any, None]], "asyncio.Future[None]"]
"""Starts the recording loop as work that outlives the socket, and ends the socket
if it fails for good (see the gateway)."""


class AckRecorder:
    __slots__ = ("_ids", "_progress", "_read", "_record", "_recorded", "_start", "loop")
    """One per socket, idle ones included: no instance dict."""

    def __init__(self, record: Record, start: Start) -> None:
        self._record, self._start = record, start
        self._ids: list[str] = []
        """Acks read and not yet handed to the store: the next write's."""
        self.loop: asyncio.Future[None] | None = None
        """The loop recording acks, while it runs."""
        self._read = self._recorded = 0
        """Runs of acks read, and how many of them are recorded."""
        self._progress: asyncio.Future[None] | None = None
        """Resolved (and replaced) each time acks are recorded."""

    @property
    def busy(self) -> bool:
        return self.loop is not None and not self.loop.done()

    def add(self, server_ids: list[str]) -> None:
        """Hand a run of acks to the loop, starting it if it is not running."""
        self._ids += server_ids
        self._read += 1
        if not self.busy:
            self.loop = self._start(self._record_runs())

    async def _record_runs(self) -> None:
        """One write for everything read so far, until nothing is left."""
        while self._ids:
            ids, self._ids, upto = self._ids, [], self._read
            try:
                await self._record(ids)
            except BaseException as exc:
                self._tell_waiters(exc)
                raise
            self._recorded = upto
            self._tell_waiters(None)

    def _tell_waiters(self, error: BaseException | None) -> None:
        """Wake whoever waits for acks to be recorded (they check how far it got)."""
        progress, self._progress = self._progress, None
        if progress is None or progress.done():
            return
        if error is None:
            progress.set_result(None)
        else:
            progress.set_exception(error)
            progress.exception()  # retrieved: the socket ends on it anyway

    async def recorded_so_far(self) -> None:
        """Wait until the acks read before now are recorded."""
        target = self._read
        while self._recorded < target:
            if self._progress is None:
                self._progress = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._progress)
