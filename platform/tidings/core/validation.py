"""Input checks shared by REST and WebSocket: phones, base64, key material."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tidings.errors import InvalidInput

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
KEY_BYTES = 32
CURVE25519_TYPE = 0x05
"""The type byte of the 33-byte wire form of an X25519 key (what the client SDK sends)."""
SIGNATURE_BYTES = 64


def phone(value: str) -> str:
    """Return ``value`` if it is an E.164 number such as ``+14155550123``."""
    if not E164.fullmatch(value):
        raise InvalidInput(f"phone number {value!r} is not in E.164 form (e.g. +14155550123)")
    return value


BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f"  # arabic letter mark, left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides (U+202E flips text)
    "\u2066\u2067\u2068\u2069"  # isolates
)
"""Invisible characters that reorder the text around them: a name holding one can show
another user's name, or push the text after it (in a notification, a list) around."""
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
"""Controls (NUL, newlines, escapes, C1), lone surrogates, line and paragraph separators.
Format characters (Cf) are allowed but for ``BIDI_CONTROLS``: emoji need the zero-width
joiner."""


def display_text(value: str, *, what: str) -> str:
    """Return ``value`` if it is fit to show to other users: no control characters, no
    line breaks and no bidirectional controls."""
    for index, char in enumerate(value):
        if char in BIDI_CONTROLS or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            raise InvalidInput(
                f"{what} contains U+{ord(char):04X} at position {index}: control, line-break "
                "and bidirectional-override characters are not allowed"
            )
    return value


def b64decode(value: str, *, what: str, max_bytes: int | None = None) -> bytes:
    """Strict standard base64 (padding required); the error names the field."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidInput(f"{what} is not valid base64") from exc
    if max_bytes is not None and len(raw) > max_bytes:
        raise InvalidInput(f"{what} is {len(raw)} bytes; at most {max_bytes} allowed")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def public_key(value: str, *, what: str) -> bytes:
    """An X25519 prekey: the raw 32 bytes, or 33 bytes ``0x05 || key`` (the SDK's form)."""
    raw = b64decode(value, what=what)
    typed = len(raw) == KEY_BYTES + 1 and raw[0] == CURVE25519_TYPE
    if len(raw) != KEY_BYTES and not typed:
        raise InvalidInput(
            f"{what} must be a 32-byte X25519 key, or 33 bytes: 0x05 then the key "
            f"(got {len(raw)} bytes)"
        )
    return raw


def verify_signed_prekey(identity_key: bytes, prekey: bytes, signature: bytes) -> None:
    """Check the identity key (Ed25519) signed exactly the uploaded prekey bytes."""
    if len(identity_key) != KEY_BYTES:
        raise InvalidInput("identity key must be a 32-byte Ed25519 public key")
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidInput("signed prekey signature must be 64 bytes")
    try:
        Ed25519PublicKey.from_public_bytes(identity_key).verify(signature, prekey)
    except (InvalidSignature, ValueError) as exc:
        raise InvalidInput(
            "signed prekey signature does not verify against the account identity key"
        ) from exc
