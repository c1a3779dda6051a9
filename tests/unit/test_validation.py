"""Input validation: phones, base64, key material, signed prekeys."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from tidings.core import validation
from tidings.errors import InvalidInput


@pytest.mark.parametrize("value", ["+14155550123", "+1234567", "+123456789012345", "+447911123456"])
def test_phone_accepts_e164(value: str) -> None:
    assert validation.phone(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "14155550123",  # no plus
        "+04155550123",  # leading zero
        "+123456",  # too short
        "+1234567890123456",  # too long
        "+1 415 555 0123",
        "+1-415-555-0123",
        "+14155550123\n",
        " +14155550123",
        "+1415555012a",
        "+١٤١٥٥٥٥٠١٢٣",  # non-ASCII digits
    ],
)
def test_phone_rejects_non_e164(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"E\.164"):
        validation.phone(value)


def test_b64decode_strict() -> None:
    assert validation.b64decode("aGVsbG8=", what="body") == b"hello"
    assert validation.b64decode("", what="body") == b""


@pytest.mark.parametrize(
    "value",
    ["aGVsbG8", "aGVs bG8=", "aGVsbG8=\n", "a-_b", "aGVsbG8==", "é", "!!!!"],
)
def test_b64decode_rejects_non_strict_input(value: str) -> None:
    with pytest.raises(InvalidInput, match="body is not valid base64"):
        validation.b64decode(value, what="body")


def test_b64decode_max_bytes() -> None:
    encoded = validation.b64encode(b"x" * 10)
    assert validation.b64decode(encoded, what="media", max_bytes=10) == b"x" * 10
    with pytest.raises(InvalidInput, match="media is 10 bytes; at most 9"):
        validation.b64decode(encoded, what="media", max_bytes=9)


@given(st.binary(max_size=200))
def test_b64_round_trip(raw: bytes) -> None:
    assert validation.b64decode(validation.b64encode(raw), what="x") == raw


@pytest.mark.parametrize("raw", [bytes(range(32)), b"\x05" + bytes(range(32))])
def test_public_key_accepts_32_bytes_or_33_with_the_type_byte(raw: bytes) -> None:
    assert validation.public_key(base64.b64encode(raw).decode(), what="prekey") == raw


@pytest.mark.parametrize(
    "raw", [b"", bytes(31), bytes(33), b"\x06" + bytes(32), b"\x05" + bytes(33), bytes(64)]
)
def test_public_key_rejects_other_lengths_and_type_bytes(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="prekey must be a 32-byte X25519 key"):
        validation.public_key(base64.b64encode(raw).decode(), what="prekey")


def _raw(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture
def signed() -> tuple[bytes, bytes, bytes]:
    identity = Ed25519PrivateKey.generate()
    prekey = _raw(X25519PrivateKey.generate())
    return _raw(identity), prekey, identity.sign(prekey)


def test_verify_signed_prekey_accepts_real_signature(signed: tuple[bytes, bytes, bytes]) -> None:
    validation.verify_signed_prekey(*signed)


def test_verify_signed_prekey_rejects_tampered_signature(
    signed: tuple[bytes, bytes, bytes],
) -> None:
    identity, prekey, signature = signed
    tampered = bytes([signature[0] ^ 0x01]) + signature[1:]
    with pytest.raises(InvalidInput, match="does not verify"):
        validation.verify_signed_prekey(identity, prekey, tampered)


def test_verify_signed_prekey_rejects_other_prekey(signed: tuple[bytes, bytes, bytes]) -> None:
    identity, prekey, signature = signed
    with pytest.raises(InvalidInput, match="does not verify"):
        validation.verify_signed_prekey(identity, bytes([prekey[0] ^ 0x80]) + prekey[1:], signature)


def test_verify_signed_prekey_rejects_other_identity(signed: tuple[bytes, bytes, bytes]) -> None:
    _, prekey, signature = signed
    other = _raw(Ed25519PrivateKey.generate())
    with pytest.raises(InvalidInput, match="does not verify"):
        validation.verify_signed_prekey(other, prekey, signature)


def test_verify_signed_prekey_checks_lengths(signed: tuple[bytes, bytes, bytes]) -> None:
    identity, prekey, signature = signed
    with pytest.raises(InvalidInput, match="identity key must be a 32-byte"):
        validation.verify_signed_prekey(b"\x05" + identity, prekey, signature)
    with pytest.raises(InvalidInput, match="signature must be 64 bytes"):
        validation.verify_signed_prekey(identity, prekey, signature[:-1])


@pytest.mark.parametrize(
    "name", ["Alice", "Zoë 🎉", "👩\u200d💻 dev", "محمد", "a\u00a0b", "日本語", ""]
)
def test_display_text_accepts_names_in_any_script(name: str) -> None:
    assert validation.display_text(name, what="name") == name


@pytest.mark.parametrize(
    "char",
    [
        *("\x00", "\n", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ud800"),
        *("\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068"),
        *("\u2069", "\u200e", "\u200f", "\u061c"),
    ],
)
def test_display_text_refuses_controls_and_bidi_overrides(char: str) -> None:
    with pytest.raises(InvalidInput, match=f"name contains U\\+{ord(char):04X} at position 3"):
        validation.display_text(f"bob{char}gpj.exe", what="name")
