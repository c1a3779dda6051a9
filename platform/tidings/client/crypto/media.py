"""Attachment encryption: a fresh AES-256-GCM key per file, digest over the ciphertext.

Blob layout: ``b"TDM1" || nonce(12) || AES-256-GCM(key, nonce, plaintext, ad=b"TDM1")``.
The uploader sends the blob to media storage and puts ``key`` and ``digest`` (SHA-256 of
the whole blob) inside the end-to-end encrypted message; the receiver checks the digest
before anything else, so a swapped or truncated blob fails loudly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tidings.client.crypto.errors import DecryptionFailed, DigestMismatch, MalformedMessage

MAGIC = b"TDM1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


@dataclass(frozen=True)
class EncryptedMedia:
    blob: bytes
    key: bytes
    digest: bytes


def encrypt_media(plaintext: bytes) -> EncryptedMedia:
    key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(NONCE_BYTES)
    blob = MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, MAGIC)
    return EncryptedMedia(blob, key, hashlib.sha256(blob).digest())


def decrypt_media(blob: bytes, key: bytes, digest: bytes) -> bytes:
    """Check ``digest`` first, then decrypt; raises instead of returning bad bytes."""
    if not hmac.compare_digest(hashlib.sha256(blob).digest(), digest):
        raise DigestMismatch("media blob does not match the SHA-256 digest from the message")
    if len(key) != KEY_BYTES:
        raise MalformedMessage("media key must be 32 bytes")
    if len(blob) < len(MAGIC) + NONCE_BYTES + TAG_BYTES or not blob.startswith(MAGIC):
        raise MalformedMessage("media blob is not in the TDM1 format")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES :], MAGIC)
    except InvalidTag as exc:
        raise DecryptionFailed("media blob failed authentication (wrong key?)") from exc
