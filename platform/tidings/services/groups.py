"""Groups: membership and roles. Only admins change membership; anyone may leave."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from tidings.core import validation
from tidings.core.model import Group, Role
from tidings.errors import Conflict, Forbidden, LimitExceeded, NotFound
from tidings.services.context import Context, Principal


class GroupService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _existing_users(self, user_ids: Sequence[str]) -> None:
        for uid in user_ids:
            if await self.ctx.accounts.get_user(uid) is None:
                raise NotFound(f"user {uid} does not exist")

    async def create(self, principal: Principal, name: str, members: Sequence[str]) -> Group:
        name = validation.display_text(name, what="group name")
        unique = list(dict.fromkeys(m for m in members if m != principal.user_id))
        limit = self.ctx.limits.group_members
        if len(unique) + 1 > limit:
            raise LimitExceeded(f"a group has at most {limit} members")
        await self._existing_users(unique)
        roles = {principal.user_id: Role.ADMIN} | {m: Role.MEMBER for m in unique}
        group = Group(str(uuid.uuid4()), name, principal.user_id, self.ctx.clock(), roles)
        await self.ctx.groups.create_group(group)
        return group

    async def get(self, principal: Principal, group_id: str) -> Group:
        """The group, if the caller is a member (non-members cannot tell it exists)."""
        group = await self.ctx.groups.get_group(group_id)
        if group is None or not group.is_member(principal.user_id):
            raise NotFound(f"group {group_id} not found, or you are not a member")
        return group

    async def _as_admin(self, principal: Principal, group_id: str) -> Group:
        group = await self.get(principal, group_id)
        if not group.is_admin(principal.user_id):
            raise Forbidden("only group admins can change membership and roles")
        return group

    async def add_members(
        self, principal: Principal, group_id: str, user_ids: Sequence[str]
    ) -> Group:
        group = await self._as_admin(principal, group_id)
        new = [u for u in dict.fromkeys(user_ids) if not group.is_member(u)]
        limit = self.ctx.limits.group_members
        if len(group.members) + len(new) > limit:
            raise LimitExceeded(f"a group has at most {limit} members")
        await self._existing_users(new)
        for uid in new:
            await self.ctx.groups.set_member(group_id, uid, Role.MEMBER)
        return await self.get(principal, group_id)

    async def remove_member(self, principal: Principal, group_id: str, user_id: str) -> Group:
        if user_id == principal.user_id:
            raise Conflict("use leave to remove yourself")
        group = await self._as_admin(principal, group_id)
        if not group.is_member(user_id):
            raise NotFound(f"user {user_id} is not a member of this group")
        await self.ctx.groups.remove_member(group_id, user_id)
        return await self.get(principal, group_id)

    async def set_role(
        self, principal: Principal, group_id: str, user_id: str, role: Role
    ) -> Group:
        group = await self._as_admin(principal, group_id)
        if not group.is_member(user_id):
            raise NotFound(f"user {user_id} is not a member of this group")
        if role is Role.MEMBER and user_id == principal.user_id and _admins(group) == 1:
            raise Conflict("a group needs an admin; promote someone before demoting yourself")
        await self.ctx.groups.set_member(group_id, user_id, role)
        return await self.get(principal, group_id)

    async def leave(self, principal: Principal, group_id: str) -> None:
        group = await self.get(principal, group_id)
        await self.ctx.groups.remove_member(group_id, principal.user_id)
        rest = sorted(u for u in group.members if u != principal.user_id)
        if rest and group.is_admin(principal.user_id) and _admins(group) == 1:
            # The last admin left: the longest-known member (stable order) takes over.
            await self.ctx.groups.set_member(group_id, rest[0], Role.ADMIN)


def _admins(group: Group) -> int:
    return sum(1 for role in group.members.values() if role is Role.ADMIN)
