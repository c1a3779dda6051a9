"""Accounts and device sessions: OTP registration, bearer tokens, device linking."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass, replace

from tidings.core import validation
from tidings.core.limitkeys import address_key, number_block
from tidings.core.model import PRIMARY_DEVICE, AuthSession, Device, User
from tidings.core.ratelimit import Limit
from tidings.errors import Conflict, Forbidden, NotFound, RateLimited, Unauthorized
from tidings.services.context import Context, Principal, device_channel
from tidings.services.directory import Directory


@dataclass(frozen=True)
class Tokens:
    user_id: str
    device_id: int
    access_token: str
    refresh_token: str
    expires_in: int


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


SPENT_REFRESH = "spent-refresh"
"""Session kind of a rotated refresh token: kept until the token would have expired, so
presenting it again is recognised as reuse and not as an unknown token."""
REUSE_GUARD_S = 60.0
"""How long the atomic first-use mark of a refresh token lives: long enough to cover two
requests racing with one token; after that the spent session row tells reuse apart."""


class AuthService:
    def __init__(self, ctx: Context, directory: Directory) -> None:
        self.ctx, self.directory = ctx, directory

    # one-time codes ----------------------------------------------------------------
    async def request_code(self, phone: str, address: str) -> int:
        """Send a code; returns its lifetime in seconds.

        Limited per number, per client ``address`` (many numbers from one place) and per
        block of numbers from every address (many numbers from many places), the
        address first: a client over its own limit spends nobody else's tokens.
        """
        ctx = self.ctx
        phone = validation.phone(phone)
        rates = ctx.rates
        await ctx.limit(
            "otp-address",
            address_key(address),
            Limit(rates.otp_address_rate, rates.otp_address_burst),
        )
        await ctx.limit(
            "otp-request", phone, Limit(rates.otp_request_rate, rates.otp_request_burst)
        )
        await ctx.limit(
            "otp-block",
            number_block(phone, ctx.limits.number_block_digits),
            Limit(rates.otp_block_rate, rates.otp_block_burst),
        )
        code = f"{secrets.randbelow(1_000_000):06d}"
        ttl = ctx.limits.otp_ttl_s
        await ctx.keys.set(f"otp:{phone}", _hash(code).encode(), ttl)
        await ctx.keys.delete(f"otp-attempts:{phone}")
        await ctx.otp.send(phone, code)
        ctx.metrics.otp_sent.inc()
        return ttl

    async def _check_code(self, phone: str, code: str) -> None:
        ctx = self.ctx
        attempts = await ctx.keys.incr(f"otp-attempts:{phone}", ctx.limits.otp_ttl_s)
        if attempts > ctx.limits.otp_verify_attempts:
            await ctx.keys.delete(f"otp:{phone}")
            raise RateLimited(
                f"too many wrong codes (at most {ctx.limits.otp_verify_attempts}); "
                "request a new code",
                retry_after=0,
            )
        stored = await ctx.keys.get(f"otp:{phone}")
        if stored is None:
            raise Unauthorized("no valid code for this number; request a new one")
        if not hmac.compare_digest(stored.decode(), _hash(code)):
            raise Unauthorized("wrong code")
        await ctx.keys.delete(f"otp:{phone}")
        await ctx.keys.delete(f"otp-attempts:{phone}")

    async def register(
        self, phone: str, code: str, device_name: str, registration_id: int, address: str
    ) -> Tokens:
        """Verify the code, create the account if new, and (re)register device 1.

        Registering again on an existing number is a reinstall: the old primary device
        loses its keys, sessions and queued messages, as in Signal.
        """
        ctx = self.ctx
        phone = validation.phone(phone)
        device_name = validation.display_text(device_name, what="device_name")
        rates = ctx.rates
        await ctx.limit(
            "register-address",
            address_key(address),
            Limit(rates.register_address_rate, rates.register_address_burst),
        )
        await self._check_code(phone, code)
        now = ctx.clock()
        user, _created = await ctx.accounts.create_user(User(str(uuid.uuid4()), phone, now))
        await ctx.devices.put_primary_device(
            Device(user.id, PRIMARY_DEVICE, device_name, registration_id, now)
        )
        await self.directory.changed(user.id)
        await ctx.messages.purge_device(user.id, PRIMARY_DEVICE)
        await ctx.channels.publish(device_channel(user.id, PRIMARY_DEVICE), _KICK)
        return await self.issue(user.id, PRIMARY_DEVICE)

    # tokens ------------------------------------------------------------------------
    def _token(self) -> str:
        return base64.urlsafe_b64encode(self.ctx.token_bytes(32)).decode().rstrip("=")

    async def issue(self, user_id: str, device_id: int) -> Tokens:
        ctx, limits = self.ctx, self.ctx.limits
        access, refresh, now = self._token(), self._token(), ctx.clock()
        await ctx.sessions.put_session(
            AuthSession(
                _hash(access), "access", user_id, device_id, now + limits.access_token_ttl_s
            )
        )
        await ctx.sessions.put_session(
            AuthSession(
                _hash(refresh), "refresh", user_id, device_id, now + limits.refresh_token_ttl_s
            )
        )
        return Tokens(user_id, device_id, access, refresh, limits.access_token_ttl_s)

    async def _session(self, token: str, kind: str) -> AuthSession:
        return await self._valid(await self.ctx.sessions.get_session(_hash(token)), kind)

    async def _valid(self, session: AuthSession | None, kind: str) -> AuthSession:
        if session is None or session.kind != kind:
            raise Unauthorized(f"{kind} token is not valid; sign in again")
        if session.expires_at <= self.ctx.clock():
            await self.ctx.sessions.delete_session(session.token_hash)
            hint = "refresh it via POST /v1/auth/refresh" if kind == "access" else "sign in again"
            raise Unauthorized(f"{kind} token has expired; {hint}")
        return session

    async def authenticate(self, access_token: str) -> Principal:
        session = await self._session(access_token, "access")
        return Principal(session.user_id, session.device_id)

    async def refresh(self, refresh_token: str) -> Tokens:
        """Trade a refresh token for new tokens; the old refresh token is spent.

        A spent refresh token presented again means two parties hold the token family
        (OAuth 2.0 Security BCP, refresh token rotation): every token of the device is
        revoked, the newest included. A device's tokens are one family: registering or
        linking replaces them, and only refreshing adds to them.
        """
        ctx = self.ctx
        token_hash = _hash(refresh_token)
        found = await ctx.sessions.get_session(token_hash)
        if found is not None and found.kind == SPENT_REFRESH:
            await self._revoke_family(found)
        session = await self._valid(found, "refresh")
        guard = f"refresh-used:{token_hash}"
        if await ctx.keys.put_if_absent(guard, b"first", REUSE_GUARD_S) is not None:
            await ctx.keys.set(guard, b"reused", REUSE_GUARD_S)
            await self._revoke_family(session)
        await ctx.sessions.put_session(replace(session, kind=SPENT_REFRESH))
        tokens = await self.issue(session.user_id, session.device_id)
        if await ctx.keys.get(guard) == b"reused":
            # A racing request with the same token revoked the family before these
            # tokens were written: they go too.
            await self._revoke_family(session)
        return tokens

    async def _revoke_family(self, session: AuthSession) -> None:
        """Revoke every token of the session's device, close its socket, and refuse."""
        await self._revoke_device(session.user_id, session.device_id)
        self.ctx.metrics.refresh_reuse.inc()
        raise Unauthorized(
            "refresh token was already used: every token of this device is revoked; sign in again"
        )

    async def logout(self, principal: Principal) -> None:
        """Revoke every token of this device."""
        await self._revoke_device(principal.user_id, principal.device_id)

    async def _revoke_device(self, user_id: str, device_id: int) -> None:
        """Delete every token of the device and close its socket."""
        await self.ctx.sessions.delete_device_sessions(user_id, device_id)
        await self.ctx.channels.publish(device_channel(user_id, device_id), _KICK)

    # linked devices ----------------------------------------------------------------
    async def create_link_code(self, principal: Principal) -> tuple[str, int]:
        if principal.device_id != PRIMARY_DEVICE:
            raise Forbidden("only the primary device can link new devices")
        code = secrets.token_urlsafe(12)
        ttl = self.ctx.limits.link_code_ttl_s
        await self.ctx.keys.set(f"link:{code}", principal.user_id.encode(), ttl)
        return code, ttl

    async def link_device(self, code: str, name: str, registration_id: int) -> Tokens:
        ctx = self.ctx
        name = validation.display_text(name, what="device_name")
        owner = await ctx.keys.get(f"link:{code}")
        if owner is None or await ctx.keys.put_if_absent(
            f"link-used:{code}", b"1", ctx.limits.link_code_ttl_s
        ):
            raise Unauthorized("link code is unknown, used or expired; create a new one")
        await ctx.keys.delete(f"link:{code}")
        user_id = owner.decode()
        device = await ctx.devices.add_device(
            Device(user_id, 0, name, registration_id, ctx.clock()), ctx.limits.devices_per_user
        )
        await self.directory.changed(user_id)
        return await self.issue(user_id, device.device_id)

    async def leave_provisioning(self, principal: Principal, address: str, blob: str) -> None:
        """(primary only) Park a provisioning blob for the new device whose link request
        key is ``address``; it fetches it once with :meth:`take_provisioning`. The blob
        is sealed to that key, so the server relays what it cannot read. The first blob
        left for an address stays: a second one is refused (409)."""
        if principal.device_id != PRIMARY_DEVICE:
            raise Forbidden("only the primary device can approve new devices")
        ttl = self.ctx.limits.link_code_ttl_s
        if await self.ctx.keys.put_if_absent(f"provision:{address}", blob.encode(), ttl):
            raise Conflict("this link request was already approved; make a new one")

    async def take_provisioning(self, address: str) -> str:
        """The blob left for ``address``, once: it is deleted as it is handed out."""
        blob = await self.ctx.keys.get(f"provision:{address}")
        if blob is None:
            raise NotFound("nothing was approved for this link request (yet)")
        await self.ctx.keys.delete(f"provision:{address}")
        return blob.decode()

    async def list_devices(self, principal: Principal) -> list[Device]:
        return await self.ctx.devices.list_devices(principal.user_id)

    async def unlink(self, principal: Principal, device_id: int) -> None:
        """The primary unlinks any linked device; a linked device may unlink itself."""
        if device_id == PRIMARY_DEVICE:
            raise Forbidden("the primary device cannot be unlinked; register again instead")
        if principal.device_id not in (PRIMARY_DEVICE, device_id):
            raise Forbidden("only the primary device can unlink other devices")
        if not await self.ctx.devices.remove_device(principal.user_id, device_id):
            raise NotFound(f"device {device_id} is not linked to this account")
        await self.directory.changed(principal.user_id)
        await self.ctx.messages.purge_device(principal.user_id, device_id)
        await self.ctx.channels.publish(device_channel(principal.user_id, device_id), _KICK)


_KICK = json.dumps({"t": "kick", "conn": None}).encode()
