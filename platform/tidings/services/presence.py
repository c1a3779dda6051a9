"""Presence: announce online / offline changes, and notice devices whose gateway died.

A gateway marks its devices offline when their sockets close. A gateway that is killed
cannot, so every device online carries a TTL refreshed by heartbeats; the presence
service reaps devices whose TTL ran out and announces them offline to their followers.
"""

from __future__ import annotations

import asyncio
import json
import logging

from tidings.aio import wait_event
from tidings.core.model import Presence
from tidings.errors import TidingsError
from tidings.services.context import Context, presence_channel

log = logging.getLogger("tidings.presence")

REAP_BATCH = 500


async def announce(ctx: Context, user_id: str) -> None:
    """Publish the user's current presence to whoever follows it."""
    (presence,) = await ctx.presence.get_presence([user_id])
    await publish_presence(ctx, presence)


async def publish_presence(ctx: Context, presence: Presence) -> None:
    """Publish a presence just read or written to whoever follows the user."""
    update = {"user": presence.user_id, "online": presence.online, "last_seen": presence.last_seen}
    await ctx.channels.publish(presence_channel(presence.user_id), json.dumps(update).encode())


class PresenceService:
    def __init__(self, ctx: Context, interval: float = 5.0) -> None:
        self.ctx, self.interval = ctx, interval

    async def reap_once(self) -> int:
        """Announce every device that expired since the last call; returns how many."""
        ctx = self.ctx
        total = 0
        while True:
            reaped = await ctx.presence.reap_expired(ctx.clock(), REAP_BATCH)
            for user_id in sorted({user for user, _ in reaped}):
                await announce(ctx, user_id)
            total += len(reaped)
            ctx.metrics.presence_reaped.inc(len(reaped))
            if len(reaped) < REAP_BATCH:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.reap_once()
            except TidingsError as exc:
                if not exc.retryable:
                    raise
                log.warning("presence reaping failed, retrying: %s", exc.message)
            await wait_event(stop, self.interval)
