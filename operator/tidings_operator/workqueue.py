"""A work queue in controller-runtime's manner: keys, not events.

Watch events, timers and child changes only say "look at this object again". Triggers
for a key that is already queued fold into one; one worker at a time handles a key, and
a trigger that arrives while it works makes it run once more afterwards, so the last
state is always reconciled and two reconciles of one object never race. A failure is
retried with exponential back-off until a trigger or a success resets it, except a
``PermanentError`` (an invalid spec): retrying cannot help, so it waits for the next
trigger (an edit, or the level-based resync).

At most ``concurrency`` reconciles of one kind run at once (controller-runtime's
``MaxConcurrentReconciles``), the others wait for a slot: a thousand MessageShards
created together must not open a thousand API requests and Kafka reads at once, and a
kind of its own keeps ChatRegions from queueing behind them.

``exclusive(key)`` lets other code (the deletion finalizer) act on an object with no
reconcile of it running: it waits out the one in flight and holds later triggers until
it is done. Without it, a reconcile that read the object just before deletion could
recreate what the finalizer has just removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Key:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


Handler = Callable[[Key], Awaitable[None]]


class PermanentError(Exception):
    """A reconcile that retrying cannot fix (kopf's ``PermanentError``): not retried
    with back-off; the next trigger of the key runs it again."""


class WorkQueue:
    def __init__(
        self,
        handler: Handler,
        *,
        debounce: float = 0.2,
        first_retry: float = 1.0,
        max_retry: float = 60.0,
        concurrency: int = 8,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._handler = handler
        self._debounce = debounce
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._dirty: set[Key] = set()
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._retries: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._held: set[Key] = set()
        self._closed = False
        self._concurrency = concurrency
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._running = 0

    def __len__(self) -> int:
        return len(self._workers)

    @property
    def retrying(self) -> int:
        """Keys waiting out a back-off after a failed reconcile."""
        return len(self._retries)

    @property
    def running(self) -> int:
        """Reconciles in progress now (the others queued wait for a slot)."""
        return self._running

    def _slot(self, kind: str) -> asyncio.Semaphore:
        if (slot := self._slots.get(kind)) is None:
            slot = self._slots[kind] = asyncio.Semaphore(self._concurrency)
        return slot

    def trigger(self, key: Key) -> None:
        if self._closed:
            return
        self._dirty.add(key)
        if key not in self._workers and key not in self._held:
            self._workers[key] = asyncio.get_running_loop().create_task(
                self._work(key), name=f"reconcile {key}"
            )

    def forget(self, key: Key) -> None:
        """The object is gone: drop pending retries and back-off."""
        self._dirty.discard(key)
        self._failures.pop(key, None)
        if (handle := self._retries.pop(key, None)) is not None:
            handle.cancel()

    @contextlib.asynccontextmanager
    async def exclusive(self, key: Key) -> AsyncIterator[None]:
        """No reconcile of ``key`` runs inside this block: the one in flight finishes
        first, and triggers that arrive meanwhile run once after the block."""
        self._held.add(key)
        try:
            if (worker := self._workers.get(key)) is not None:
                await asyncio.shield(worker)
            yield
        finally:
            self._held.discard(key)
            if key in self._dirty:
                self.trigger(key)

    async def _work(self, key: Key) -> None:
        try:
            while key in self._dirty and key not in self._held and not self._closed:
                await asyncio.sleep(self._debounce)  # fold bursts of watch events
                async with self._slot(key.kind):
                    if key in self._held or self._closed:
                        break  # the finalizer took the key while this waited for a slot
                    self._dirty.discard(key)
                    if (handle := self._retries.pop(key, None)) is not None:
                        handle.cancel()
                    failed = await self._run(key)
                if not failed:
                    self._failures.pop(key, None)
        finally:
            self._workers.pop(key, None)

    async def _run(self, key: Key) -> bool:
        """One reconcile of ``key``; True when it failed (a retry is scheduled)."""
        self._running += 1
        try:
            try:
                await self._handler(key)
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                log.warning("reconcile of %s cannot succeed as it is, not retried: %s", key, exc)
                return False
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self._first_retry * 2 ** (failures - 1), self._max_retry)
                log.exception(
                    "reconcile of %s failed (attempt %d), retry in %.0fs", key, failures, delay
                )
                self._retries[key] = asyncio.get_running_loop().call_later(delay, self.trigger, key)
                return True
            return False
        finally:
            self._running -= 1

    async def close(self) -> None:
        self._closed = True
        for handle in self._retries.values():
            handle.cancel()
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
