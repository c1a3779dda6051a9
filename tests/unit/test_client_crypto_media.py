"""Client crypto media: fresh key per file, digest over the ciphertext, loud failures."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.client.crypto.errors import DecryptionFailed, DigestMismatch, MalformedMessage
from tidings.client.crypto.media import decrypt_media, encrypt_media


@given(st.binary(max_size=4096))
def test_round_trip(data: bytes) -> None:
    media = encrypt_media(data)
    assert media.digest == hashlib.sha256(media.blob).digest()
    assert len(media.key) == 32
    assert decrypt_media(media.blob, media.key, media.digest) == data


def test_fresh_key_per_file() -> None:
    one, two = encrypt_media(b"same"), encrypt_media(b"same")
    assert one.key != two.key
    assert one.blob != two.blob


def test_digest_mismatch_fails_before_decrypting() -> None:
    media = encrypt_media(b"photo bytes" * 100)
    tampered = bytearray(media.blob)
    tampered[-1] ^= 1
    with pytest.raises(DigestMismatch):
        decrypt_media(bytes(tampered), media.key, media.digest)
    with pytest.raises(DigestMismatch):
        decrypt_media(media.blob[:-1], media.key, media.digest)
    with pytest.raises(DigestMismatch):
        decrypt_media(media.blob, media.key, hashlib.sha256(b"other").digest())


def test_wrong_key_fails() -> None:
    media = encrypt_media(b"photo")
    with pytest.raises(DecryptionFailed):
        decrypt_media(media.blob, bytes(32), media.digest)
    with pytest.raises(MalformedMessage):
        decrypt_media(media.blob, b"short", media.digest)


def test_matching_digest_of_a_non_blob_is_still_refused() -> None:
    junk = b"not a blob"
    with pytest.raises(MalformedMessage):
        decrypt_media(junk, bytes(32), hashlib.sha256(junk).digest())
