"""Discovery, profiles, contacts and presence privacy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tidings.core import validation
from tidings.core.model import PresencePrivacy, User
from tidings.core.ratelimit import Limit
from tidings.errors import InvalidInput, LimitExceeded, NotFound
from tidings.services.context import Context, Principal


class UserService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def discover(self, principal: Principal, phones: Sequence[str]) -> dict[str, str]:
        """Map the registered numbers among ``phones`` to user ids."""
        ctx = self.ctx
        if len(phones) > ctx.limits.discovery_batch:
            raise LimitExceeded(f"look up at most {ctx.limits.discovery_batch} numbers at once")
        checked = list(dict.fromkeys(validation.phone(p) for p in phones))
        rates = ctx.rates
        await ctx.limit(
            "discovery", principal.user_id, Limit(rates.discovery_rate, rates.discovery_burst)
        )
        daily = rates.discovery_daily_numbers
        await ctx.limit(
            "discovery-daily", principal.user_id, Limit(daily / 86_400, daily), len(checked)
        )
        found = await ctx.accounts.users_by_phone(checked)
        ctx.metrics.discovery_numbers.labels("registered").inc(len(found))
        ctx.metrics.discovery_numbers.labels("unregistered").inc(len(checked) - len(found))
        return {phone: user.id for phone, user in found.items()}

    async def get(self, user_id: str) -> User:
        user = await self.ctx.accounts.get_user(user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        return user

    async def update_profile(
        self,
        principal: Principal,
        display_name: str | None,
        about: str | None,
        presence_privacy: PresencePrivacy | None,
    ) -> User:
        if display_name is not None:
            validation.display_text(display_name, what="display_name")
        if about is not None:
            validation.display_text(about, what="about")
        user = await self.get(principal.user_id)
        updated = replace(
            user,
            display_name=user.display_name if display_name is None else display_name,
            about=user.about if about is None else about,
            presence_privacy=user.presence_privacy
            if presence_privacy is None
            else presence_privacy,
        )
        await self.ctx.accounts.update_user(updated)
        return updated

    async def add_contacts(self, principal: Principal, user_ids: Sequence[str]) -> list[str]:
        if principal.user_id in user_ids:
            raise InvalidInput("you cannot add yourself as a contact")
        for uid in user_ids:
            await self.get(uid)
        await self.ctx.contacts.add_contacts(
            principal.user_id, list(dict.fromkeys(user_ids)), self.ctx.limits.contacts_per_user
        )
        return await self.ctx.contacts.list_contacts(principal.user_id)

    async def remove_contact(self, principal: Principal, user_id: str) -> None:
        await self.ctx.contacts.remove_contact(principal.user_id, user_id)

    async def contacts(self, principal: Principal) -> list[str]:
        return await self.ctx.contacts.list_contacts(principal.user_id)

    async def may_see_presence(self, viewer: str, target: User) -> bool:
        if viewer == target.id:
            return True
        if target.presence_privacy is PresencePrivacy.EVERYONE:
            return True
        if target.presence_privacy is PresencePrivacy.CONTACTS:
            return await self.ctx.contacts.has_contact(target.id, viewer)
        return False
