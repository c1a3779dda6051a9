"""Contacts' identities: sessions opened from fetched bundles, safety numbers, verification.

Every identity key the client meets (in a fetched bundle here, in a session a contact set
up with us in :mod:`tidings.client.receiving`) goes through the trust store
(:mod:`tidings.client.trust`), so a changed key is never accepted silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.client.base import unb64
from tidings.client.crypto.fingerprint import Party, normalize, safety_number
from tidings.client.crypto.identity import PreKeyBundle
from tidings.client.crypto.session import Session
from tidings.client.receiving import Receiving
from tidings.client.trust import Identity, SafetyNumberMismatch, Trust, UntrustedIdentity


@dataclass(frozen=True)
class SafetyNumber:
    """What ``verify`` shows: the 60 digits and how far the user trusts the key."""

    user_id: str
    digits: str
    trust: Trust


class Identities(Receiving):
    async def _open_sessions(self, user_id: str, devices: list[int] | None = None) -> None:
        """Fetch bundles and start sessions with ``user_id``'s devices (all when None).

        Raises :class:`UntrustedIdentity` (starting no session) when the bundles carry a
        new identity key for a contact the user had verified."""
        assert self.keys is not None
        paths = (
            [f"/v1/keys/{user_id}"]
            if devices is None
            else [f"/v1/keys/{user_id}/{d}" for d in devices]
        )
        for path in paths:
            answer = await self.api.call("GET", path)
            await self._note_identity(user_id, unb64(answer["identity_key"]))
            if self.store.trust.blocked(user_id):
                raise UntrustedIdentity(user_id)
            for device in answer["devices"]:
                device_id = int(device["device_id"])
                if user_id == self.user_id and device_id == self.device_id:
                    continue
                bundle = PreKeyBundle.from_api(answer["identity_key"], device)
                session = await Session.initiate(self.keys, bundle)
                self.store.put_session(user_id, device_id, session.to_bytes())
                self.store.put_registration_id(user_id, device_id, int(device["registration_id"]))

    async def _known_identity(self, user_id: str) -> Identity:
        """The remembered identity of ``user_id``; fetched with their bundles (as a
        first message would) when we never talked."""
        if user_id == self.user_id:
            raise ValueError("a safety number is between you and someone else")
        stored = self.store.trust.get(user_id)
        if stored is None:
            await self._open_sessions(user_id)
            stored = self.store.trust.get(user_id)
        assert stored is not None
        return stored

    async def safety_number(self, user_id: str) -> SafetyNumber:
        """The safety number with ``user_id`` (the same 60 digits on both phones)."""
        assert self.keys is not None, "register first"
        theirs = await self._known_identity(user_id)
        digits = safety_number(
            Party(self.user_id, self.keys.identity.public_key),
            Party(user_id, theirs.identity_key),
        )
        return SafetyNumber(user_id, digits, theirs.trust)

    async def mark_verified(self, user_id: str, compared: str | None = None) -> SafetyNumber:
        """Mark the current key of ``user_id`` verified (and a blocked change accepted).
        With ``compared`` (the digits the user read off the other phone), only if they
        match."""
        shown = await self.safety_number(user_id)
        if compared is not None and normalize(compared) != shown.digits:
            raise SafetyNumberMismatch(
                "those digits are not the safety number with this contact: do not mark it "
                "verified; compare again, in person or over a channel you trust"
            )
        self.store.trust.set_trust(user_id, Trust.VERIFIED)
        return SafetyNumber(user_id, shown.digits, Trust.VERIFIED)

    async def unmark_verified(self, user_id: str) -> SafetyNumber:
        await self._known_identity(user_id)
        self.store.trust.set_trust(user_id, Trust.UNVERIFIED)
        return await self.safety_number(user_id)

    async def accept_identity(self, user_id: str) -> SafetyNumber:
        """Accept a verified contact's new identity key without verifying it: sending is
        allowed again and the contact counts as unverified. Nothing changes for a key
        that did not change."""
        if (await self._known_identity(user_id)).trust is Trust.CHANGED:
            self.store.trust.set_trust(user_id, Trust.UNVERIFIED)
        return await self.safety_number(user_id)

    def check_trusted(self, user_id: str) -> None:
        """Raise :class:`UntrustedIdentity` when sending to ``user_id`` must wait for the
        user to accept a changed key."""
        if self.store.trust.blocked(user_id):
            raise UntrustedIdentity(user_id)
