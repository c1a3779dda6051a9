"""Client crypto identity: key formats the server accepts, prekeys, serialization."""

from __future__ import annotations

import base64

import pytest

from tidings.api.schemas import IdentityKeyIn, OneTimePreKeysIn, SignedPreKeyIn
from tidings.client.crypto.errors import InvalidBundle, MalformedMessage, UnknownPreKey
from tidings.client.crypto.identity import DeviceKeys, PreKeyBundle
from tidings.core import validation
from tidings.errors import InvalidInput


def test_signed_prekey_passes_the_servers_check() -> None:
    keys = DeviceKeys.generate()
    ik = keys.identity_upload()["identity_key"]
    spk = keys.signed_prekey_upload()
    identity = validation.public_key(ik, what="identity_key")
    assert len(identity) == 32
    prekey = validation.public_key(spk["public_key"], what="signed prekey")
    signature = validation.b64decode(spk["signature"], what="signature")
    validation.verify_signed_prekey(identity, prekey, signature)  # raises on failure


def test_upload_payloads_match_the_api_schemas() -> None:
    keys = DeviceKeys.generate()
    IdentityKeyIn.model_validate(keys.identity_upload())
    SignedPreKeyIn.model_validate(keys.signed_prekey_upload())
    OneTimePreKeysIn.model_validate(keys.one_time_prekeys_upload(keys.generate_one_time_prekeys(5)))


def test_signature_from_another_identity_is_refused_by_the_server() -> None:
    keys, other = DeviceKeys.generate(), DeviceKeys.generate()
    spk = keys.signed_prekey
    with pytest.raises(InvalidInput):
        validation.verify_signed_prekey(other.identity.public_key, spk.public_key, spk.signature)


def test_one_time_prekeys_have_unique_ids_and_are_consumed() -> None:
    keys = DeviceKeys.generate()
    batch = keys.generate_one_time_prekeys(100) + keys.generate_one_time_prekeys(100)
    assert len({k.key_id for k in batch}) == 200
    assert len({k.public_key for k in batch}) == 200
    assert all(len(k.public_key) == 33 and k.public_key[0] == 5 for k in batch)
    assert keys.one_time_prekey_count == 200
    keys.consume_one_time_prekey(batch[0].key_id)
    assert keys.one_time_prekey_count == 199
    with pytest.raises(UnknownPreKey):
        keys.get_one_time_prekey(batch[0].key_id)


def test_rotation_keeps_the_previous_signed_prekey() -> None:
    keys = DeviceKeys.generate(now=1)
    first = keys.signed_prekey
    second = keys.rotate_signed_prekey(now=2)
    assert keys.signed_prekey == second != first
    assert keys.get_signed_prekey(first.key_id) == first
    keys.rotate_signed_prekey(now=3)
    with pytest.raises(UnknownPreKey):
        keys.get_signed_prekey(first.key_id)
    assert keys.get_signed_prekey(second.key_id) == second


def test_device_keys_round_trip() -> None:
    keys = DeviceKeys.generate()
    keys.generate_one_time_prekeys(3)
    keys.rotate_signed_prekey()
    keys.record_initiation(b"\x01" * 32)
    restored = DeviceKeys.from_bytes(keys.to_bytes())
    assert restored.to_bytes() == keys.to_bytes()
    assert restored.signed_prekey == keys.signed_prekey
    assert restored.identity == keys.identity
    assert restored.initiation_seen(b"\x01" * 32)


@pytest.mark.parametrize(
    "data", [b"", b"[]", b'{"v": 2}', b'{"v": 1}', b'{"v":1,"signed_prekeys":[1]}']
)
def test_corrupt_device_keys_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        DeviceKeys.from_bytes(data)


def _api_bundle(keys: DeviceKeys, *, with_opk: bool) -> PreKeyBundle:
    opk = keys.one_time_prekeys_upload(keys.generate_one_time_prekeys(1))["prekeys"][0]
    device = {
        "device_id": 1,
        "registration_id": 7,
        "signed_prekey": keys.signed_prekey_upload(),
        "one_time_prekey": opk if with_opk else None,
    }
    return PreKeyBundle.from_api(keys.identity_upload()["identity_key"], device)


@pytest.mark.parametrize("with_opk", [True, False])
def test_bundle_from_api_verifies(with_opk: bool) -> None:
    bundle = _api_bundle(DeviceKeys.generate(), with_opk=with_opk)
    bundle.verify()
    assert (bundle.one_time_prekey is None) is not with_opk


def test_bundle_with_forged_signature_is_refused() -> None:
    bundle = _api_bundle(DeviceKeys.generate(), with_opk=True)
    sig = bytearray(bundle.signed_prekey_signature)
    sig[5] ^= 1
    forged = PreKeyBundle(
        bundle.identity_key,
        bundle.signed_prekey_id,
        bundle.signed_prekey,
        bytes(sig),
        bundle.one_time_prekey_id,
        bundle.one_time_prekey,
    )
    with pytest.raises(InvalidBundle):
        forged.verify()


def test_bundle_rejects_bad_base64() -> None:
    keys = DeviceKeys.generate()
    device = {"signed_prekey": {**keys.signed_prekey_upload(), "signature": "!!"}}
    with pytest.raises(MalformedMessage):
        PreKeyBundle.from_api(base64.b64encode(keys.identity.public_key).decode(), device)
