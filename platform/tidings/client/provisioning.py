"""Provisioning a linked device: the account identity reaches it, the server never sees it.

The flow (the user carries two short texts between the devices, like a QR code):

1. The new device makes an ephemeral X25519 key pair and shows its public half as a
   *link request*: ``tidings-link-request:1:<base64url(32-byte X25519 public key)>``.
2. The primary asks the server for a link code (``POST /v1/devices/link-code``) and seals
   ``{identity seed, link code, user id, phone}`` to that key, giving a *provisioning blob*:
   ``tidings-provision:1:<base64url(0x01 || eph_pub(32) || nonce(12) || AES-256-GCM ct)>``.
   The AES key is ``HKDF-SHA256(X25519(eph, request key), salt=eph_pub || request key,
   info="Tidings provisioning v1")``; the AEAD associated data is the version byte,
   ``eph_pub`` and the request key, so a blob only opens on the device that asked for it.
3. The new device opens the blob, trades the code for its tokens (``POST /v1/devices/link``)
   and publishes a signed prekey signed by the shared identity.

The server sees the link code only when the new device redeems it; the identity seed
never leaves the two devices unencrypted.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.client.crypto.errors import CryptoError

REQUEST_PREFIX = "tidings-link-request:1:"
BLOB_PREFIX = "tidings-provision:1:"
VERSION = b"\x01"
INFO = b"Tidings provisioning v1"
NONCE_BYTES = 12
KEY_BYTES = 32


class ProvisioningError(CryptoError):
    """A link request or provisioning blob that is malformed, tampered or not for us."""


@dataclass(frozen=True)
class ProvisionPayload:
    """What the primary hands to the new device."""

    identity_seed: bytes
    link_code: str
    user_id: str
    phone: str | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "identity": base64.b64encode(self.identity_seed).decode(),
                "code": self.link_code,
                "user_id": self.user_id,
                "phone": self.phone,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ProvisionPayload:
        try:
            obj: dict[str, Any] = json.loads(raw)
            if obj.get("v") != 1:
                raise ProvisioningError(f"unsupported provisioning payload {obj.get('v')!r}")
            seed = base64.b64decode(obj["identity"], validate=True)
            phone = obj.get("phone")
            payload = cls(
                seed, str(obj["code"]), str(obj["user_id"]), None if phone is None else str(phone)
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ProvisioningError(f"provisioning payload is invalid: {exc}") from exc
        if len(payload.identity_seed) != KEY_BYTES:
            raise ProvisioningError("identity seed must be 32 bytes")
        return payload


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64url(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ProvisioningError(f"{what} is not valid base64url") from exc


def _strip(text: str, prefix: str, what: str) -> str:
    text = "".join(text.split())  # tolerate line breaks from copy/paste
    if not text.startswith(prefix):
        raise ProvisioningError(f"not a {what} (expected it to start with {prefix!r})")
    return text[len(prefix) :]


def _key(shared: bytes, eph_pub: bytes, request_pub: bytes) -> bytes:
    hkdf = HKDF(hashes.SHA256(), KEY_BYTES, salt=eph_pub + request_pub, info=INFO)
    return hkdf.derive(shared)


def new_link_request() -> tuple[bytes, str]:
    """The new device's ephemeral private key (keep it locally) and the text to show."""
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), REQUEST_PREFIX + _b64url(
        private.public_key().public_bytes_raw()
    )


def parse_link_request(text: str) -> bytes:
    """The 32-byte X25519 public key inside a link request text."""
    raw = _unb64url(_strip(text, REQUEST_PREFIX, "link request"), "link request")
    if len(raw) != KEY_BYTES:
        raise ProvisioningError("link request key must be 32 bytes")
    return raw


def link_address(request: str) -> str:
    """Where the server keeps the blob for ``request``: its key in base64url (43
    characters), checked to be a well-formed link request first."""
    parse_link_request(request)
    return "".join(request.split())[len(REQUEST_PREFIX) :]


def seal(request: str, payload: ProvisionPayload) -> str:
    """Encrypt ``payload`` to the device that showed ``request``; returns the blob text."""
    request_pub = parse_link_request(request)
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes_raw()
    try:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(request_pub))
    except ValueError as exc:  # an all-zero shared secret: a low-order public key
        raise ProvisioningError("link request key is not usable") from exc
    nonce = secrets.token_bytes(NONCE_BYTES)
    aad = VERSION + eph_pub + request_pub
    sealed = AESGCM(_key(shared, eph_pub, request_pub)).encrypt(nonce, payload.to_bytes(), aad)
    return BLOB_PREFIX + _b64url(VERSION + eph_pub + nonce + sealed)


def open_blob(blob: str, request_private: bytes) -> ProvisionPayload:
    """Decrypt a provisioning blob with the ephemeral key of our own link request."""
    raw = _unb64url(_strip(blob, BLOB_PREFIX, "provisioning blob"), "provisioning blob")
    head = 1 + KEY_BYTES + NONCE_BYTES
    if len(raw) < head + 16 or raw[:1] != VERSION:
        raise ProvisioningError("provisioning blob is truncated or of an unknown version")
    eph_pub, nonce, sealed = raw[1 : 1 + KEY_BYTES], raw[1 + KEY_BYTES : head], raw[head:]
    private = X25519PrivateKey.from_private_bytes(request_private)
    request_pub = private.public_key().public_bytes_raw()
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        key = _key(shared, eph_pub, request_pub)
        plaintext = AESGCM(key).decrypt(nonce, sealed, VERSION + eph_pub + request_pub)
    except (InvalidTag, ValueError) as exc:
        raise ProvisioningError(
            "provisioning blob does not open: it was made for another link request, "
            "or it was altered"
        ) from exc
    return ProvisionPayload.from_bytes(plaintext)
