"""A socket following other users' presence: their current state on request, then a
``presence`` event at every change, for the users it may see."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tidings.core import jsoncodec, wsproto
from tidings.core.model import User
from tidings.errors import LimitExceeded
from tidings.services.context import Context, Principal, presence_channel
from tidings.services.users import UserService


class PresenceFollowing:
    def __init__(
        self,
        ctx: Context,
        users: UserService,
        principal: Principal,
        send: Callable[[str], Awaitable[None]],
    ) -> None:
        self.ctx, self.users, self.principal, self.send = ctx, users, principal, send
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    async def subscribe(self, user_ids: list[str]) -> list[dict[str, Any]]:
        """Current presence of each visible user, then live updates as ``presence`` events."""
        limit = self.ctx.limits.presence_subscriptions
        if len(self._tasks) + len(user_ids) > limit:
            raise LimitExceeded(f"a socket follows the presence of at most {limit} users")
        result: list[dict[str, Any]] = []
        for uid in dict.fromkeys(user_ids):
            user = await self.ctx.accounts.get_user(uid)
            if user is None or not await self.users.may_see_presence(self.principal.user_id, user):
                result.append({"user": uid, "visible": False})
                continue
            (presence,) = await self.ctx.presence.get_presence([uid])
            result.append(
                {
                    "user": uid,
                    "visible": True,
                    "online": presence.online,
                    "last_seen": presence.last_seen,
                }
            )
            if uid not in self._tasks:
                self._tasks[uid] = asyncio.create_task(self._forward(user))
        return result

    def unsubscribe(self, user_ids: list[str]) -> None:
        for uid in user_ids:
            task = self._tasks.pop(uid, None)
            if task is not None:
                task.cancel()

    async def _forward(self, user: User) -> None:
        subscription = await self.ctx.channels.subscribe(presence_channel(user.id))
        try:
            async for raw in subscription:
                await self.send(wsproto.event("presence", jsoncodec.loads(raw)))
        finally:
            await subscription.close()
