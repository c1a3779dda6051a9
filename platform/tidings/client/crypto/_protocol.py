"""Concrete configuration of the ``x3dh`` and ``doubleratchet`` packages for Tidings.

Both packages are abstract: this module fixes the key encoding, hash functions, KDF
info strings and the AEAD, and offers the two X3DH halves as plain functions over
:mod:`tidings.client.crypto.identity` values.
"""

from __future__ import annotations

import struct
from typing import Any

import doubleratchet
import x3dh
from doubleratchet.recommended import HashFunction as DRHash
from doubleratchet.recommended import aead_aes_hmac, kdf_hkdf, kdf_separate_hmacs
from doubleratchet.recommended.diffie_hellman_ratchet_curve25519 import (
    DiffieHellmanRatchet as Curve25519Ratchet,
)
from x3dh.models import BaseStateModel, IdentityKeyPairModel, SignedPreKeyPairModel
from x3dh.types import SecretType

from tidings.client.crypto.identity import (
    CURVE25519_TYPE,
    IdentityKeyPair,
    OneTimePreKey,
    SignedPreKey,
)

X3DH_INFO = b"Tidings X3DH v1"
ROOT_INFO = b"Tidings DR root chain v1"
MESSAGE_INFO = b"Tidings DR message keys v1"
CHAIN_CONSTANT = b"\x01\x02"  # HMAC(ck, 0x01) = message key, HMAC(ck, 0x02) = next chain key
MAX_SKIP = 1000
"""Largest number of message keys derived ahead in one chain (bounded skip)."""
ED25519_TYPE = b"\xed"


class _X3DH(x3dh.BaseState):
    @staticmethod
    def _encode_public_key(key_format: x3dh.IdentityKeyFormat, pub: bytes) -> bytes:
        if key_format is x3dh.IdentityKeyFormat.CURVE_25519:
            return CURVE25519_TYPE + pub
        return ED25519_TYPE + pub


class _RootKDF(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> DRHash:
        return DRHash.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return ROOT_INFO


class _ChainKDF(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> DRHash:
        return DRHash.SHA_256


class _AEAD(aead_aes_hmac.AEAD):
    @staticmethod
    def _get_hash_function() -> DRHash:
        return DRHash.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return MESSAGE_INFO


class Ratchet(doubleratchet.DoubleRatchet):
    """Double Ratchet with X25519, HKDF root chain, HMAC chains, AES-256-CBC + HMAC."""

    @staticmethod
    def _build_associated_data(associated_data: bytes, header: doubleratchet.Header) -> bytes:
        return (
            struct.pack(">H", len(associated_data))
            + associated_data
            + header.ratchet_pub
            + struct.pack(">II", header.previous_sending_chain_length, header.sending_chain_length)
        )


RATCHET_CONFIG: dict[str, Any] = {
    "diffie_hellman_ratchet_class": Curve25519Ratchet,
    "root_chain_kdf": _RootKDF,
    "message_chain_kdf": _ChainKDF,
    "message_chain_constant": CHAIN_CONSTANT,
    "dos_protection_threshold": MAX_SKIP,
    "max_num_skipped_message_keys": MAX_SKIP,
    "aead": _AEAD,
}


def _state(
    identity: IdentityKeyPair, spk: SignedPreKey, opks: frozenset[bytes] = frozenset()
) -> _X3DH:
    model = BaseStateModel(
        identity_key=IdentityKeyPairModel(secret=identity.seed, secret_type=SecretType.SEED),
        signed_pre_key=SignedPreKeyPairModel(
            priv=spk.private_key, sig=spk.signature, timestamp=spk.created_at
        ),
        old_signed_pre_key=None,
        pre_keys=opks,
    )
    return _X3DH.from_model(
        model, x3dh.IdentityKeyFormat.ED_25519, x3dh.HashFunction.SHA_256, X3DH_INFO
    )


async def agree_active(
    identity: IdentityKeyPair,
    own_spk: SignedPreKey,
    bundle: x3dh.Bundle,
) -> tuple[bytes, bytes, x3dh.Header]:
    """Initiator half: (shared secret, associated data, header). Checks the signature."""
    state = _state(identity, own_spk)
    return await state.get_shared_secret_active(bundle, require_pre_key=False)


async def agree_passive(
    identity: IdentityKeyPair,
    spk: SignedPreKey,
    opk: OneTimePreKey | None,
    initiator_identity: bytes,
    ephemeral_key: bytes,
) -> tuple[bytes, bytes]:
    """Responder half: (shared secret, associated data)."""
    opks = frozenset() if opk is None else frozenset({opk.private_key})
    state = _state(identity, spk, opks)
    header = x3dh.Header(
        identity_key=initiator_identity,
        ephemeral_key=ephemeral_key,
        signed_pre_key=spk.raw_public_key,
        pre_key=None if opk is None else opk.raw_public_key,
    )
    secret, ad, _ = await state.get_shared_secret_passive(header, require_pre_key=False)
    return secret, ad
