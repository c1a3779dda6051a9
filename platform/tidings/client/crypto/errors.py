"""Errors raised by the client crypto core; every failure is loud and named.

They derive from :class:`CryptoError`, not from :class:`tidings.errors.TidingsError`:
those carry HTTP statuses for server responses, while these never leave the device.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by ``tidings.client.crypto``."""


class MalformedMessage(CryptoError):
    """Bytes that do not parse as the expected envelope, key or state format."""


class InvalidBundle(CryptoError):
    """A prekey bundle whose signed prekey signature or key sizes do not check out."""


class UnknownPreKey(CryptoError):
    """An incoming session names a prekey id this device no longer (or never) had."""


class DecryptionFailed(CryptoError):
    """Authentication of a ciphertext failed: tampered, truncated or the wrong key.

    Session state is left untouched, so the next genuine message still decrypts.
    """


class DuplicateMessage(CryptoError):
    """This message was already decrypted once (a replay or a redelivery)."""


class TooManySkipped(CryptoError):
    """The message is further ahead than the bounded skip window allows."""


class SessionMismatch(CryptoError):
    """The envelope belongs to a different session than the one it was given to."""


class BadSignature(CryptoError):
    """A sender-key message whose signature does not verify."""


class UnknownSenderKey(CryptoError):
    """A group message under a sender key this device never received."""


class DigestMismatch(CryptoError):
    """A media blob whose SHA-256 digest differs from the one in the message."""
