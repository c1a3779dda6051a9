"""Prekey directory: identity keys, signed prekeys, one-time prekeys, bundles."""

from __future__ import annotations

from collections.abc import Sequence

from tidings.core import validation
from tidings.core.model import OneTimePreKey, PreKeyBundle, SignedPreKey
from tidings.core.ratelimit import Limit
from tidings.errors import Conflict, Forbidden, InvalidInput, LimitExceeded, NotFound
from tidings.services.context import Context, Principal


class KeyService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def set_identity_key(self, principal: Principal, key: bytes) -> None:
        if principal.device_id != 1:
            raise Forbidden("only the primary device can set the identity key")
        if len(key) != validation.KEY_BYTES:
            raise InvalidInput("identity key must be a 32-byte Ed25519 public key")
        await self.ctx.public_keys.set_identity_key(principal.user_id, key)

    async def set_signed_prekey(self, principal: Principal, key: SignedPreKey) -> None:
        identity = await self.ctx.public_keys.get_identity_key(principal.user_id)
        if identity is None:
            raise Conflict("upload the identity key (from the primary device) first")
        validation.verify_signed_prekey(identity, key.public_key, key.signature)
        await self.ctx.public_keys.set_signed_prekey(principal.user_id, principal.device_id, key)

    async def add_one_time_prekeys(
        self, principal: Principal, keys: Sequence[OneTimePreKey]
    ) -> int:
        limits = self.ctx.limits
        if len(keys) > limits.prekeys_per_upload:
            raise LimitExceeded(f"upload at most {limits.prekeys_per_upload} prekeys at once")
        if len({k.key_id for k in keys}) != len(keys):
            raise InvalidInput("one-time prekey ids in one upload must be distinct")
        return await self.ctx.public_keys.add_one_time_prekeys(
            principal.user_id, principal.device_id, keys, limits.prekeys_stored_per_device
        )

    async def count(self, principal: Principal) -> int:
        return await self.ctx.public_keys.count_one_time_prekeys(
            principal.user_id, principal.device_id
        )

    async def bundles(
        self, principal: Principal, user_id: str, device_id: int | None = None
    ) -> list[PreKeyBundle]:
        """One bundle per ready device of ``user_id``, each claiming one one-time prekey."""
        ctx = self.ctx
        rates = ctx.rates
        await ctx.limit(
            "prekey-fetch",
            f"{principal.user_id}:{principal.device_id}",
            Limit(rates.prekey_fetch_rate, rates.prekey_fetch_burst),
        )
        if user_id != principal.user_id:
            # Each fetch claims one-time prekeys: without a per-pair limit one account
            # could use up another's before its devices top them up.
            await ctx.limit(
                "prekey-pair",
                f"{principal.user_id}:{user_id}",
                Limit(rates.prekey_pair_rate, rates.prekey_pair_burst),
            )
        identity = await ctx.public_keys.get_identity_key(user_id)
        devices = await ctx.devices.list_devices(user_id)
        if identity is None or not devices:
            raise NotFound(f"user {user_id} has no published keys")
        if device_id is not None:
            devices = [d for d in devices if d.device_id == device_id]
            if not devices:
                raise NotFound(f"user {user_id} has no device {device_id}")
        out: list[PreKeyBundle] = []
        for device in devices:
            signed = await ctx.public_keys.get_signed_prekey(user_id, device.device_id)
            if signed is None:
                continue  # the device has not finished setting up its keys
            one_time = await ctx.public_keys.claim_one_time_prekey(user_id, device.device_id)
            out.append(
                PreKeyBundle(device.device_id, device.registration_id, identity, signed, one_time)
            )
        if not out:
            raise NotFound(f"user {user_id} has no device with a signed prekey yet")
        return out
