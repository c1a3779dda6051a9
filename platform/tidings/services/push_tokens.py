"""Device push tokens: each device registers its own FCM or APNs token."""

from __future__ import annotations

from tidings.core.model import PushToken
from tidings.core.push import Provider
from tidings.errors import Forbidden
from tidings.services.context import Context, Principal


class PushTokenService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @staticmethod
    def _own(principal: Principal, device_id: int) -> None:
        if device_id != principal.device_id:
            raise Forbidden(
                f"a device manages only its own push token; this is device "
                f"{principal.device_id}, not {device_id}"
            )

    async def set(
        self, principal: Principal, device_id: int, provider: Provider, token: str, alert: bool
    ) -> None:
        """Register (or replace) the calling device's token; another device holding the
        same token loses it (the app was reinstalled or the phone changed hands)."""
        self._own(principal, device_id)
        await self.ctx.push_tokens.set_push_token(
            principal.user_id, device_id, PushToken(provider, token, alert, self.ctx.clock())
        )

    async def remove(self, principal: Principal, device_id: int) -> None:
        """Stop pushes to the calling device (idempotent)."""
        self._own(principal, device_id)
        await self.ctx.push_tokens.remove_push_token(principal.user_id, device_id)

    async def providers(self, principal: Principal) -> dict[int, Provider]:
        """Which provider each device of the account is reachable by (never the token)."""
        tokens = await self.ctx.push_tokens.push_tokens_of(principal.user_id)
        return {device: token.provider for device, token in tokens.items()}
