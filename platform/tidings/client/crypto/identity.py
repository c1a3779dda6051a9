"""Account identity, signed prekey and one-time prekeys: generation and serialization.

* The identity key is an Ed25519 key pair; its 32-byte public key is what the server
  stores and checks signatures against (``tidings.core.validation``).
* Prekeys are X25519 key pairs. On the wire (upload, bundle) a prekey public key is 33
  bytes: the type byte ``0x05`` followed by the 32-byte X25519 key. The signed prekey's
  signature is a standard Ed25519 signature by the identity key over exactly those 33
  bytes, which is what the server verifies and what X3DH checks on the initiating side.
* :class:`DeviceKeys` is the mutable private key store of one device; it serializes to
  JSON bytes so a later store can persist it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import xeddsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings.client.crypto import _codec as c
from tidings.client.crypto.errors import InvalidBundle, MalformedMessage, UnknownPreKey
from tidings.core.validation import verify_signed_prekey
from tidings.errors import InvalidInput

CURVE25519_TYPE = b"\x05"
KEY_ID_MAX = 2**31 - 1
KEEP_SIGNED_PREKEYS = 2
SEEN_INITIATIONS = 2000
STATE_VERSION = 1


def encode_prekey(pub: bytes) -> bytes:
    """Wire form of an X25519 public key: ``0x05 || key`` (33 bytes)."""
    if len(pub) != 32:
        raise ValueError("X25519 public keys are 32 bytes")
    return CURVE25519_TYPE + pub


def decode_prekey(raw: bytes, *, what: str = "prekey") -> bytes:
    """Inverse of :func:`encode_prekey`; anything else is refused."""
    if len(raw) != 33 or raw[:1] != CURVE25519_TYPE:
        raise InvalidBundle(f"{what} must be 33 bytes: 0x05 followed by an X25519 key")
    return raw[1:]


def _next_id(key_id: int) -> int:
    return key_id + 1 if key_id < KEY_ID_MAX else 0


@dataclass(frozen=True)
class IdentityKeyPair:
    """Ed25519 identity; ``seed`` is the RFC 8032 32-byte private key."""

    seed: bytes

    @classmethod
    def generate(cls) -> IdentityKeyPair:
        return cls(Ed25519PrivateKey.generate().private_bytes_raw())

    @property
    def public_key(self) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()

    def sign(self, data: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(data)


class _X25519PreKey:
    """Public forms of a prekey's X25519 private key (mixed into the key dataclasses)."""

    private_key: bytes

    @property
    def raw_public_key(self) -> bytes:
        return bytes(xeddsa.priv_to_curve25519_pub(self.private_key))

    @property
    def public_key(self) -> bytes:
        """The 33 bytes that are uploaded (and, for a signed prekey, signed)."""
        return encode_prekey(self.raw_public_key)


@dataclass(frozen=True)
class SignedPreKey(_X25519PreKey):
    key_id: int
    private_key: bytes
    signature: bytes
    created_at: int

    @classmethod
    def generate(cls, identity: IdentityKeyPair, key_id: int, now: int) -> SignedPreKey:
        priv = secrets.token_bytes(32)
        public = encode_prekey(xeddsa.priv_to_curve25519_pub(priv))
        return cls(key_id, priv, identity.sign(public), now)


@dataclass(frozen=True)
class OneTimePreKey(_X25519PreKey):
    key_id: int
    private_key: bytes


@dataclass(frozen=True)
class PreKeyBundle:
    """One remote device's fetched bundle (``/v1/keys/...`` response, one device)."""

    identity_key: bytes
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    one_time_prekey_id: int | None = None
    one_time_prekey: bytes | None = None

    def verify(self) -> None:
        """Same check the server runs, plus the 0x05 prekey encoding X3DH relies on."""
        try:
            verify_signed_prekey(
                self.identity_key, self.signed_prekey, self.signed_prekey_signature
            )
        except InvalidInput as exc:
            raise InvalidBundle(exc.message) from exc
        decode_prekey(self.signed_prekey, what="signed prekey")
        if (self.one_time_prekey is None) != (self.one_time_prekey_id is None):
            raise InvalidBundle("one-time prekey and its id must come together")
        if self.one_time_prekey is not None:
            decode_prekey(self.one_time_prekey, what="one-time prekey")

    @classmethod
    def from_api(cls, identity_key: str, device: dict[str, Any]) -> PreKeyBundle:
        """Build from the bundle JSON: top-level ``identity_key`` and one ``devices[i]``."""
        spk = c.get_obj(device, "signed_prekey")
        otk = device.get("one_time_prekey")
        if otk is not None and not isinstance(otk, dict):
            raise MalformedMessage("one_time_prekey must be an object or null")
        return cls(
            identity_key=c.unb64(identity_key, what="identity_key"),
            signed_prekey_id=c.get_int(spk, "key_id", hi=KEY_ID_MAX),
            signed_prekey=c.unb64(spk.get("public_key"), what="signed prekey"),
            signed_prekey_signature=c.unb64(spk.get("signature"), what="signature", size=64),
            one_time_prekey_id=None if otk is None else c.get_int(otk, "key_id", hi=KEY_ID_MAX),
            one_time_prekey=None if otk is None else c.unb64(otk.get("public_key"), what="prekey"),
        )


class DeviceKeys:
    """The private keys of one device; mutable, serializable with :meth:`to_bytes`."""

    def __init__(
        self,
        identity: IdentityKeyPair,
        signed_prekeys: list[SignedPreKey],
        one_time_prekeys: list[OneTimePreKey],
        next_prekey_id: int,
        seen_initiations: list[bytes] | None = None,
    ) -> None:
        if not signed_prekeys:
            raise ValueError("a device needs at least one signed prekey")
        self.identity = identity
        self._signed = {k.key_id: k for k in signed_prekeys}
        self._current_signed_id = signed_prekeys[-1].key_id
        self._one_time = {k.key_id: k for k in one_time_prekeys}
        self._next_prekey_id = next_prekey_id
        self._seen = list(seen_initiations or [])

    @classmethod
    def generate(cls, *, now: int | None = None) -> DeviceKeys:
        return cls.from_identity(IdentityKeyPair.generate(), now=now)

    @classmethod
    def from_identity(cls, identity: IdentityKeyPair, *, now: int | None = None) -> DeviceKeys:
        """Fresh prekeys under an existing account identity (a linked device)."""
        stamp = int(time.time()) if now is None else now
        spk = SignedPreKey.generate(identity, secrets.randbelow(KEY_ID_MAX), stamp)
        return cls(identity, [spk], [], secrets.randbelow(KEY_ID_MAX))

    # -- signed prekeys ---------------------------------------------------------------
    @property
    def signed_prekey(self) -> SignedPreKey:
        return self._signed[self._current_signed_id]

    def rotate_signed_prekey(self, *, now: int | None = None) -> SignedPreKey:
        """New current signed prekey; the previous one stays usable for late initiations."""
        stamp = int(time.time()) if now is None else now
        spk = SignedPreKey.generate(self.identity, _next_id(self._current_signed_id), stamp)
        self._signed[spk.key_id] = spk
        self._current_signed_id = spk.key_id
        for key_id in sorted(self._signed, key=lambda k: self._signed[k].created_at):
            if len(self._signed) <= KEEP_SIGNED_PREKEYS:
                break
            if key_id != spk.key_id:
                del self._signed[key_id]
        return spk

    def get_signed_prekey(self, key_id: int) -> SignedPreKey:
        try:
            return self._signed[key_id]
        except KeyError:
            raise UnknownPreKey(f"signed prekey {key_id} is not (or no longer) held") from None

    # -- one-time prekeys -------------------------------------------------------------
    def generate_one_time_prekeys(self, count: int) -> list[OneTimePreKey]:
        made = []
        for _ in range(count):
            while self._next_prekey_id in self._one_time:
                self._next_prekey_id = _next_id(self._next_prekey_id)
            key = OneTimePreKey(self._next_prekey_id, secrets.token_bytes(32))
            self._one_time[key.key_id] = key
            self._next_prekey_id = _next_id(self._next_prekey_id)
            made.append(key)
        return made

    @property
    def one_time_prekey_count(self) -> int:
        return len(self._one_time)

    def get_one_time_prekey(self, key_id: int) -> OneTimePreKey:
        try:
            return self._one_time[key_id]
        except KeyError:
            raise UnknownPreKey(
                f"one-time prekey {key_id} was already used or never existed"
            ) from None

    def consume_one_time_prekey(self, key_id: int) -> None:
        self._one_time.pop(key_id, None)

    # -- initiations already accepted (replay guard for session setup) ------------------
    def initiation_seen(self, ephemeral_key: bytes) -> bool:
        return ephemeral_key in self._seen

    def record_initiation(self, ephemeral_key: bytes) -> None:
        self._seen.append(ephemeral_key)
        del self._seen[:-SEEN_INITIATIONS]

    # -- upload payloads (shapes of the /v1/keys request bodies) ------------------------
    def identity_upload(self) -> dict[str, Any]:
        return {"identity_key": c.b64(self.identity.public_key)}

    def signed_prekey_upload(self) -> dict[str, Any]:
        spk = self.signed_prekey
        return {
            "key_id": spk.key_id,
            "public_key": c.b64(spk.public_key),
            "signature": c.b64(spk.signature),
        }

    @staticmethod
    def one_time_prekeys_upload(keys: list[OneTimePreKey]) -> dict[str, Any]:
        return {"prekeys": [{"key_id": k.key_id, "public_key": c.b64(k.public_key)} for k in keys]}

    # -- serialization ----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        signed = sorted(self._signed.values(), key=lambda k: k.key_id != self._current_signed_id)
        return c.dumps(
            {
                "v": STATE_VERSION,
                "identity": c.b64(self.identity.seed),
                "signed_prekeys": [
                    {
                        "id": k.key_id,
                        "priv": c.b64(k.private_key),
                        "sig": c.b64(k.signature),
                        "at": k.created_at,
                    }
                    for k in reversed(signed)  # current one last
                ],
                "one_time_prekeys": [
                    {"id": k.key_id, "priv": c.b64(k.private_key)} for k in self._one_time.values()
                ],
                "next_prekey_id": self._next_prekey_id,
                "seen": [c.b64(e) for e in self._seen],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceKeys:
        obj = c.loads(data, what="device keys")
        c.check_version(obj, STATE_VERSION, what="device keys")
        try:
            signed = [
                SignedPreKey(
                    c.get_int(k, "id", hi=KEY_ID_MAX),
                    c.unb64(k["priv"], what="prekey", size=32),
                    c.unb64(k["sig"], what="signature", size=64),
                    c.get_int(k, "at", hi=2**63),
                )
                for k in obj["signed_prekeys"]
            ]
            one_time = [
                OneTimePreKey(
                    c.get_int(k, "id", hi=KEY_ID_MAX), c.unb64(k["priv"], what="prekey", size=32)
                )
                for k in obj["one_time_prekeys"]
            ]
            seen = [c.unb64(e, what="ephemeral key", size=32) for e in obj["seen"]]
            identity = IdentityKeyPair(c.unb64(obj["identity"], what="identity", size=32))
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedMessage(f"device keys are incomplete: {exc}") from exc
        return cls(identity, signed, one_time, c.get_int(obj, "next_prekey_id"), seen)
