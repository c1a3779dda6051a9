"""1:1 sessions: X3DH setup from a fetched bundle, then Double Ratchet messages.

The initiator runs X3DH against a verified :class:`PreKeyBundle` (one-time prekey
optional) and attaches the X3DH header to every message until it has decrypted a
reply, so the responder can set up the session from whichever of those arrives first
(:meth:`Session.accept`). Replays raise :class:`DuplicateMessage`, tampering raises
:class:`DecryptionFailed`; a failed decryption never changes the session. The envelope
format lives in :mod:`tidings.client.crypto.envelope`.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable
from typing import TypeVar

import doubleratchet
import x3dh

from tidings.client.crypto import _codec as c
from tidings.client.crypto._protocol import RATCHET_CONFIG, Ratchet, agree_active, agree_passive
from tidings.client.crypto.envelope import VERSION, Envelope, Initiation
from tidings.client.crypto.errors import (
    DecryptionFailed,
    DuplicateMessage,
    InvalidBundle,
    MalformedMessage,
    SessionMismatch,
    TooManySkipped,
)
from tidings.client.crypto.identity import DeviceKeys, PreKeyBundle, decode_prekey

T = TypeVar("T")
SEEN_MAX = 2000
"""Ratchet positions remembered per session to name replays as :class:`DuplicateMessage`."""


async def _guarded(coro: Awaitable[T]) -> T:
    """Await a library decryption, translating its exceptions into ours."""
    try:
        with warnings.catch_warnings():
            # The library warns (instead of raising) when a DH step would skip too many
            # keys of the old chain; those keys are simply not kept.
            warnings.filterwarnings("ignore", message="More than .* message keys skipped")
            return await coro
    except doubleratchet.DuplicateMessageException as exc:
        raise DuplicateMessage("message was already decrypted") from exc
    except doubleratchet.DoSProtectionException as exc:
        raise TooManySkipped(str(exc)) from exc
    except (
        doubleratchet.AuthenticationFailedException,
        doubleratchet.DecryptionFailedException,
        ValueError,
    ) as exc:
        raise DecryptionFailed(
            "ciphertext failed authentication (tampered or wrong session)"
        ) from exc


class Session:
    """One pairwise Double Ratchet session with one remote device."""

    def __init__(
        self,
        *,
        remote_identity_key: bytes,
        associated_data: bytes,
        initiation: Initiation,
        send_initiation: bool,
        ratchet: Ratchet | None = None,
        pending: tuple[bytes, bytes] | None = None,
        seen: list[tuple[bytes, int]] | None = None,
    ) -> None:
        self.remote_identity_key = remote_identity_key
        self.initiation = initiation
        self._ad = associated_data
        self._send_initiation = send_initiation
        self._ratchet = ratchet
        self._pending = pending  # (shared secret, responder ratchet key) until first send
        self._seen = list(seen or [])

    # -- setup ------------------------------------------------------------------------
    @classmethod
    async def initiate(cls, keys: DeviceKeys, bundle: PreKeyBundle) -> Session:
        """Active X3DH against a fetched bundle (with or without a one-time prekey)."""
        bundle.verify()
        spk = decode_prekey(bundle.signed_prekey)
        opk = None if bundle.one_time_prekey is None else decode_prekey(bundle.one_time_prekey)
        theirs = x3dh.Bundle(
            bundle.identity_key,
            spk,
            bundle.signed_prekey_signature,
            frozenset() if opk is None else frozenset({opk}),
        )
        try:
            secret, ad, header = await agree_active(keys.identity, keys.signed_prekey, theirs)
        except x3dh.KeyAgreementException as exc:
            raise InvalidBundle(str(exc)) from exc
        initiation = Initiation(
            header.identity_key,
            header.ephemeral_key,
            bundle.signed_prekey_id,
            bundle.one_time_prekey_id,
        )
        return cls(
            remote_identity_key=bundle.identity_key,
            associated_data=ad,
            initiation=initiation,
            send_initiation=True,
            pending=(secret, spk),
        )

    @classmethod
    async def accept(cls, keys: DeviceKeys, data: bytes) -> tuple[Session, bytes]:
        """Passive X3DH from an initiator's envelope; consumes the one-time prekey used."""
        env = Envelope.parse(data)
        init = env.initiation
        if init is None:
            raise SessionMismatch("no session exists and the envelope carries no X3DH header")
        if keys.initiation_seen(init.ephemeral_key):
            raise DuplicateMessage("this session setup was already processed")
        spk = keys.get_signed_prekey(init.signed_prekey_id)
        opk = None
        if init.one_time_prekey_id is not None:
            opk = keys.get_one_time_prekey(init.one_time_prekey_id)
        try:
            secret, ad = await agree_passive(
                keys.identity, spk, opk, init.identity_key, init.ephemeral_key
            )
        except (x3dh.KeyAgreementException, ValueError) as exc:
            raise DecryptionFailed(f"X3DH failed: {exc}") from exc
        ratchet, plaintext = await _guarded(
            Ratchet.decrypt_initial_message(
                shared_secret=secret,
                own_ratchet_priv=spk.private_key,
                message=env.message,
                associated_data=ad,
                **RATCHET_CONFIG,
            )
        )
        if init.one_time_prekey_id is not None:
            keys.consume_one_time_prekey(init.one_time_prekey_id)
        keys.record_initiation(init.ephemeral_key)
        session = cls(
            remote_identity_key=init.identity_key,
            associated_data=ad,
            initiation=init,
            send_initiation=False,
            ratchet=ratchet,
        )
        session._remember(env.message.header)
        return session, bytes(plaintext)

    def owns(self, data: bytes) -> bool:
        """Whether ``data`` belongs to this session (vs. a fresh initiation by the peer)."""
        env = Envelope.parse(data)
        return env.initiation is None or env.initiation == self.initiation

    # -- messages ---------------------------------------------------------------------
    async def encrypt(self, plaintext: bytes) -> bytes:
        if self._ratchet is None:
            assert self._pending is not None
            secret, their_spk = self._pending
            self._ratchet, message = await Ratchet.encrypt_initial_message(
                shared_secret=secret,
                recipient_ratchet_pub=their_spk,
                message=plaintext,
                associated_data=self._ad,
                **RATCHET_CONFIG,
            )
            self._pending = None
        else:
            message = await self._ratchet.encrypt_message(plaintext, self._ad)
        return Envelope(message, self.initiation if self._send_initiation else None).to_bytes()

    async def decrypt(self, data: bytes) -> bytes:
        """Decrypt one envelope; raises on replay, tamper or a foreign session."""
        env = Envelope.parse(data)
        if env.initiation is not None and env.initiation != self.initiation:
            raise SessionMismatch("envelope starts a different session; use Session.accept")
        if self._ratchet is None:
            raise SessionMismatch("this session has not sent its first message yet")
        header = env.message.header
        if (header.ratchet_pub, header.sending_chain_length) in self._seen:
            raise DuplicateMessage("message was already decrypted")
        plaintext = await _guarded(self._ratchet.decrypt_message(env.message, self._ad))
        self._remember(header)
        if self._send_initiation and env.initiation is None:
            self._send_initiation = False  # the responder has the session now
        return bytes(plaintext)

    def _remember(self, header: doubleratchet.Header) -> None:
        self._seen.append((header.ratchet_pub, header.sending_chain_length))
        del self._seen[:-SEEN_MAX]

    # -- serialization ----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return c.dumps(
            {
                "v": VERSION,
                "remote_ik": c.b64(self.remote_identity_key),
                "ad": c.b64(self._ad),
                "initiation": self.initiation.to_json(),
                "send_initiation": self._send_initiation,
                "ratchet": None if self._ratchet is None else dict(self._ratchet.json),
                "pending": None if self._pending is None else [c.b64(p) for p in self._pending],
                "seen": [[c.b64(pub), n] for pub, n in self._seen],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Session:
        obj = c.loads(data, what="session state")
        c.check_version(obj, VERSION, what="session state")
        try:
            raw_ratchet = obj["ratchet"]
            ratchet = (
                None if raw_ratchet is None else Ratchet.from_json(raw_ratchet, **RATCHET_CONFIG)
            )
            pending = obj["pending"]
            return cls(
                remote_identity_key=c.unb64(obj["remote_ik"], what="remote_ik", size=32),
                associated_data=c.unb64(obj["ad"], what="ad"),
                initiation=Initiation.from_json(c.get_obj(obj, "initiation")),
                send_initiation=bool(obj["send_initiation"]),
                ratchet=ratchet,
                pending=None
                if pending is None
                else (c.unb64(pending[0], what="secret"), c.unb64(pending[1], what="spk")),
                seen=[(c.unb64(p, what="seen", size=32), int(n)) for p, n in obj["seen"]],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedMessage(f"session state is invalid: {exc}") from exc


async def decrypt_incoming(
    keys: DeviceKeys, session: Session | None, data: bytes
) -> tuple[Session, bytes]:
    """Route an envelope: existing session if it owns it, else a new passive session.

    Returns the session to keep (the same object, or a new one replacing it).
    """
    if session is not None and session.owns(data):
        return session, await session.decrypt(data)
    return await Session.accept(keys, data)
