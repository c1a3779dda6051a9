"""Who exists and which devices they have: read on every send, changed rarely.

Every send checks its recipients exist and compares the sender's device list with theirs;
every delivered receipt looks up the original sender's devices. Those answers change
only when a device is registered, linked or unlinked, so each process keeps them for a
few seconds instead of asking the user store every time.

Staleness is bounded twice: a change (``changed``) forgets the user here at once and
tells every other process through the ``directory`` channel, whose listener (``run``)
forgets it there; and no entry outlives ``ttl`` seconds, which covers a missed
notification (a listener that loses its channel also forgets everything). A send
checked against a list that changed a moment ago is at worst refused with the list the
client must fetch anyway (409/410), or misses a device linked in that moment.

Users are never deleted, so "exists" is cached without expiry (bounded in size).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from tidings.aio import wait_event
from tidings.core.model import Device
from tidings.errors import TidingsError
from tidings.ports import Subscription
from tidings.services.context import Context

log = logging.getLogger("tidings.directory")

CHANNEL = "directory"
"""Channel naming users whose devices changed (the payload is the user id)."""

DEVICES_TTL_S = 10.0
MAX_ENTRIES = 100_000


class Directory:
    def __init__(self, ctx: Context, ttl: float = DEVICES_TTL_S) -> None:
        self.ctx, self.ttl = ctx, ttl
        self._devices: dict[str, tuple[float, tuple[Device, ...]]] = {}
        self._existing: set[str] = set()
        self._generation = 0
        """Bumped by every forget: a lookup that raced one does not store its answer."""

    async def exists(self, user_id: str) -> bool:
        if user_id in self._existing:
            return True
        if await self.ctx.accounts.get_user(user_id) is None:
            return False
        if len(self._existing) >= MAX_ENTRIES:
            self._existing.clear()
        self._existing.add(user_id)
        return True

    async def devices_of(self, user_ids: Sequence[str]) -> list[Device]:
        """Every device of ``user_ids`` (as ``Devices.devices_of``), from the cache
        where fresh; one store lookup for the rest."""
        now = self.ctx.clock()
        missing = [u for u in dict.fromkeys(user_ids) if self._fresh(u, now) is None]
        found: dict[str, list[Device]] = {u: [] for u in missing}
        if missing:
            generation = self._generation
            for device in await self.ctx.devices.devices_of(missing):
                found.setdefault(device.user_id, []).append(device)
            if generation == self._generation:
                if len(self._devices) + len(found) > MAX_ENTRIES:
                    self._devices.clear()
                for user_id, devices in found.items():
                    self._devices[user_id] = (now + self.ttl, tuple(devices))
        out: list[Device] = []
        for user_id in dict.fromkeys(user_ids):
            cached = found.get(user_id)
            out += cached if cached is not None else (self._fresh(user_id, now) or ())
        return out

    def _fresh(self, user_id: str, now: float) -> tuple[Device, ...] | None:
        entry = self._devices.get(user_id)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def forget(self, user_id: str | None = None) -> None:
        """Forget one user's devices (or everything)."""
        self._generation += 1
        if user_id is None:
            self._devices.clear()
        else:
            self._devices.pop(user_id, None)

    async def changed(self, user_id: str) -> None:
        """The user's devices changed: forget them here and tell every other process."""
        self.forget(user_id)
        await self.ctx.channels.publish(CHANNEL, user_id.encode())

    async def run(self, stop: asyncio.Event) -> None:
        """Forget what other processes changed, until ``stop``."""
        while not stop.is_set():
            try:
                subscription = await self.ctx.channels.subscribe(CHANNEL)
            except TidingsError as exc:
                if not exc.retryable:
                    raise
                log.warning("directory changes unheard, retrying: %s", exc.message)
                await wait_event(stop, 1.0)
                continue
            # Whatever changed while nobody listened is unknown: start afresh.
            self.forget()
            try:
                listening = asyncio.create_task(self._listen(subscription))
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait([listening, stopping], return_when=asyncio.FIRST_COMPLETED)
                for task in (listening, stopping):
                    task.cancel()
                results = await asyncio.gather(listening, stopping, return_exceptions=True)
                error = results[0]
                if isinstance(error, TidingsError) and not error.retryable:
                    raise error
                if isinstance(error, TidingsError):
                    log.warning("directory changes unheard, resubscribing: %s", error.message)
            finally:
                await subscription.close()

    async def _listen(self, subscription: Subscription) -> None:
        async for raw in subscription:
            self.forget(bytes(raw).decode())
