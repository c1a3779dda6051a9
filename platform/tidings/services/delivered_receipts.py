"""The gateway's ``delivered`` receipts, held for a moment and produced together.

A receipt costs what a message costs on its way back: a produce, an inbox append, a
fetch, a deliver and an ack at the sender's end. At a few messages a second per
conversation, each ack run held one message, so every message cost two such trips.
Held for ``Limits.receipt_hold_s`` (a quarter of a second: nobody sees a tick that much
later), the acks of one reader for one sender in that time become one receipt, and
every socket's receipts of that moment go in one produce.

- An ack is recorded in the inbox before its messages are handed here: holding the
  receipt never holds up the ack, and a read receipt the client sends afterwards waits
  for ``flushed`` so that it still follows the ``delivered`` one (``gateway``).
- A produce that fails for a retryable reason is tried again (backoff from 0.5 s
  doubling to 10 s, ``ATTEMPTS`` tries, about a minute) while later receipts go on;
  past that they are dropped and counted (``tidings_receipts_dropped``), as are those
  refused for good. Receipts are a courtesy the server adds, never a message: a
  gateway killed in the hold loses them, as it lost those it had not yet produced.
- ``close`` produces what is held (the gateway's shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from tidings.core.envelopes import Envelope
from tidings.errors import TidingsError
from tidings.services.context import Principal

log = logging.getLogger("tidings.gateway")

ATTEMPTS = 8
"""Tries of one produce of held receipts (backoff 0.5 s doubling to 10 s)."""
FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.5, 10.0
CLOSE_WAIT_S = 5.0
"""How long a stopping gateway waits for the receipts it still produces."""

Held = list[tuple[Principal, list[Envelope]]]
Produce = Callable[[Held], Awaitable[None]]
"""Produces the receipts for each reader's acked messages (``Router.delivered_many``)."""


class DeliveredReceipts:
    def __init__(self, produce: Produce, hold_s: float, dropped: Callable[[int], None]) -> None:
        self._produce, self._hold_s, self._dropped = produce, hold_s, dropped
        self._held: dict[tuple[str, int], tuple[Principal, list[Envelope]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._first_tries: set[asyncio.Future[None]] = set()
        """Of each produce under way, its first try (what ``flushed`` waits for)."""
        self._work: set[asyncio.Future[None]] = set()

    def add(self, reader: Principal, acked: Sequence[Envelope]) -> None:
        """Hold receipts for messages ``reader`` acked (recorded already)."""
        key = (reader.user_id, reader.device_id)
        entry = self._held.get(key)
        if entry is None:
            self._held[key] = (reader, list(acked))
        else:
            entry[1].extend(acked)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._hold_s, self._release)

    async def flushed(self) -> None:
        """Produce what is held now; return once every produce under way had its first
        try (a receipt sent after this follows them, unless a try failed)."""
        if self._held:
            self._release()
        if self._first_tries:
            await asyncio.gather(*(asyncio.shield(f) for f in self._first_tries))

    async def close(self) -> None:
        """Produce what is held and wait for every produce under way (shutdown), at most
        ``CLOSE_WAIT_S``: a produce still retrying then is given up (and counted)."""
        if self._held:
            self._release()
        if not self._work:
            return
        _, retrying = await asyncio.wait(self._work, timeout=CLOSE_WAIT_S)
        for work in retrying:
            work.cancel()
        await asyncio.gather(*retrying, return_exceptions=True)

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = list(self._held.values()), {}
        if not held:
            return
        first_try = asyncio.get_running_loop().create_future()
        self._first_tries.add(first_try)
        first_try.add_done_callback(self._first_tries.discard)
        work = asyncio.ensure_future(self._produce_held(held, first_try))
        self._work.add(work)
        work.add_done_callback(self._work.discard)

    async def _produce_held(self, held: Held, first_try: asyncio.Future[None]) -> None:
        count = sum(len(acked) for _, acked in held)
        pause = FIRST_PAUSE_S
        produced = False
        try:
            for attempt in range(ATTEMPTS):
                if attempt:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, LONGEST_PAUSE_S)
                try:
                    await self._produce(held)
                    produced = True
                    return
                except TidingsError as exc:
                    if not exc.retryable:
                        log.error("delivered receipts for %d messages refused: %s", count, exc)
                        break
                    log.warning("delivered receipts held back, retrying: %s", exc.message)
                except Exception:
                    log.exception("delivered receipts for %d messages failed", count)
                    break
                finally:
                    if not first_try.done():
                        first_try.set_result(None)
        finally:
            if not first_try.done():
                first_try.set_result(None)
            if not produced:  # every try failed, refused for good, or given up at close
                self._dropped(count)
                log.error("delivered receipts for %d messages dropped", count)
