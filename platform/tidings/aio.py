"""Small asyncio helpers shared by services and engines."""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; returns whether it was set.

    Uses ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11 the latter
    can swallow a cancellation that races the event, and the cancelled task then loops
    on forever (seen as a socket task that never ends at server shutdown).
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


class KeyedLocks(Generic[K]):
    """One ``asyncio.Lock`` per key, forgotten once nobody holds or waits on it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[K, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: K) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock


T = TypeVar("T")


class Mailbox(Generic[T]):
    """A bounded queue for one consumer that drops its oldest item when full, and costs
    next to nothing while empty (no deque, no waiter until needed): one per socket."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self._items: collections.deque[T] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: T) -> None:
        if self._items is None:
            self._items = collections.deque(maxlen=self.depth)  # full: the oldest goes
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item


class Flag:
    """``asyncio.Event`` for one waiter, without the per-instance deque of waiters."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until set (at most ``timeout`` seconds); returns whether it is set."""
        if self._set:
            return True
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await self._waiter
            else:
                async with asyncio.timeout(timeout):
                    await self._waiter
        except TimeoutError:
            pass
        finally:
            self._waiter = None
        return self._set
