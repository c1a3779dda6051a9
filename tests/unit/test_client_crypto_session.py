"""Client crypto 1:1 sessions: X3DH setup, Double Ratchet, replay, tamper, persistence."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.client.crypto.errors import (
    CryptoError,
    DecryptionFailed,
    DuplicateMessage,
    InvalidBundle,
    SessionMismatch,
    TooManySkipped,
    UnknownPreKey,
)
from tidings.client.crypto.identity import DeviceKeys, PreKeyBundle
from tidings.client.crypto.session import Session, decrypt_incoming


def _bundle(keys: DeviceKeys, *, with_opk: bool = True) -> PreKeyBundle:
    spk = keys.signed_prekey
    opk = keys.generate_one_time_prekeys(1)[0] if with_opk else None
    return PreKeyBundle(
        keys.identity.public_key,
        spk.key_id,
        spk.public_key,
        spk.signature,
        None if opk is None else opk.key_id,
        None if opk is None else opk.public_key,
    )


async def _pair(*, with_opk: bool = True) -> tuple[DeviceKeys, DeviceKeys, Session, Session]:
    """Alice initiates, Bob accepts the first message, both sessions returned."""
    alice, bob = DeviceKeys.generate(), DeviceKeys.generate()
    a = await Session.initiate(alice, _bundle(bob, with_opk=with_opk))
    b, text = await Session.accept(bob, await a.encrypt(b"hello"))
    assert text == b"hello"
    return alice, bob, a, b


def _tamper(envelope: bytes, field: str, value: object = None) -> bytes:
    obj = json.loads(envelope)
    if value is None:
        raw = bytearray(obj[field].encode())
        raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
        value = raw.decode()
    obj[field] = value
    return json.dumps(obj).encode()


async def test_many_messages_both_directions() -> None:
    alice, bob, a, b = await _pair()
    for round_ in range(30):
        burst = round_ % 4 + 1
        for i in range(burst):
            assert await b.decrypt(await a.encrypt(f"a{round_}.{i}".encode())) == (
                f"a{round_}.{i}".encode()
            )
        for i in range(burst):
            text = f"b{round_}.{i}".encode()
            assert await a.decrypt(await b.encrypt(text)) == text
    assert a.remote_identity_key == bob.identity.public_key
    assert b.remote_identity_key == alice.identity.public_key


@pytest.mark.parametrize("with_opk", [True, False])
async def test_setup_with_and_without_one_time_prekey(with_opk: bool) -> None:
    _, bob, a, b = await _pair(with_opk=with_opk)
    assert bob.one_time_prekey_count == 0
    assert (a.initiation.one_time_prekey_id is None) is not with_opk
    assert await a.decrypt(await b.encrypt(b"reply")) == b"reply"
    assert await b.decrypt(await a.encrypt(b"again")) == b"again"


async def test_initiator_stops_sending_x3dh_header_after_a_reply() -> None:
    _, _, a, b = await _pair()
    assert "x3dh" in json.loads(await a.encrypt(b"1"))
    await a.decrypt(await b.encrypt(b"r"))
    assert "x3dh" not in json.loads(await a.encrypt(b"2"))


async def test_forged_bundle_is_refused() -> None:
    alice, bob = DeviceKeys.generate(), DeviceKeys.generate()
    good = _bundle(bob)
    mallory = DeviceKeys.generate()
    forged = PreKeyBundle(
        good.identity_key,
        good.signed_prekey_id,
        mallory.signed_prekey.public_key,
        mallory.signed_prekey.signature,
    )
    with pytest.raises(InvalidBundle):
        await Session.initiate(alice, forged)


def _deliver_permuted(order: list[int], first_from_alice: bool) -> None:
    async def run() -> None:
        alice, bob = DeviceKeys.generate(), DeviceKeys.generate()
        a = await Session.initiate(alice, _bundle(bob))
        texts = [f"m{i}".encode() for i in range(len(order))]
        batch = [await a.encrypt(t) for t in texts]
        b: Session | None = None
        for i in order:  # every one of these carries the X3DH header
            b, text = await decrypt_incoming(bob, b, batch[i])
            assert text == texts[i]
        assert b is not None
        # and the other direction, mid-conversation, after a DH ratchet step
        replies = [await b.encrypt(t) for t in texts]
        for i in order:
            assert await a.decrypt(replies[i]) == texts[i]
        if first_from_alice:
            assert await b.decrypt(await a.encrypt(b"after")) == b"after"

    asyncio.run(run())


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(8))), st.booleans())
def test_out_of_order_delivery(order: list[int], first_from_alice: bool) -> None:
    _deliver_permuted(order, first_from_alice)


async def test_skipped_messages_across_ratchet_steps() -> None:
    _, _, a, b = await _pair()
    lost = [await a.encrypt(b"lost-1"), await a.encrypt(b"lost-2")]
    assert await b.decrypt(await a.encrypt(b"seen")) == b"seen"
    assert await a.decrypt(await b.encrypt(b"ratchet")) == b"ratchet"
    assert await b.decrypt(await a.encrypt(b"new chain")) == b"new chain"
    assert await b.decrypt(lost[1]) == b"lost-2"
    assert await b.decrypt(lost[0]) == b"lost-1"


async def test_replay_is_rejected_never_decrypted_twice() -> None:
    alice, bob = DeviceKeys.generate(), DeviceKeys.generate()
    a = await Session.initiate(alice, _bundle(bob, with_opk=False))
    first = await a.encrypt(b"first")
    b, _ = await decrypt_incoming(bob, None, first)
    with pytest.raises(DuplicateMessage):
        await decrypt_incoming(bob, b, first)  # same session
    with pytest.raises(DuplicateMessage):
        await decrypt_incoming(bob, None, first)  # session lost: setup replay still caught
    second = await a.encrypt(b"second")
    assert await b.decrypt(second) == b"second"
    with pytest.raises(DuplicateMessage):
        await b.decrypt(second)
    # after several ratchet steps an old message is still refused
    for _ in range(3):
        await a.decrypt(await b.encrypt(b"x"))
        await b.decrypt(await a.encrypt(b"y"))
    with pytest.raises(DuplicateMessage):
        await b.decrypt(second)
    restored = Session.from_bytes(b.to_bytes())
    with pytest.raises(CryptoError):
        await restored.decrypt(second)


async def test_replay_of_setup_after_one_time_prekey_was_used() -> None:
    alice, bob = DeviceKeys.generate(), DeviceKeys.generate()
    bundle = _bundle(bob)
    a = await Session.initiate(alice, bundle)
    first = await a.encrypt(b"first")
    await Session.accept(bob, first)
    with pytest.raises(DuplicateMessage):
        await Session.accept(bob, first)
    # another initiator reusing the consumed one-time prekey finds it gone
    eve = await Session.initiate(DeviceKeys.generate(), bundle)
    with pytest.raises(UnknownPreKey):
        await Session.accept(bob, await eve.encrypt(b"late"))


@pytest.mark.parametrize(("field", "value"), [("ct", None), ("dh", None), ("pn", 7), ("n", 3)])
async def test_tamper_is_detected_and_session_survives(field: str, value: object) -> None:
    _, _, a, b = await _pair()
    await a.decrypt(await b.encrypt(b"reply"))  # a now sends without the X3DH header
    genuine = await a.encrypt(b"genuine")
    with pytest.raises(DecryptionFailed):
        await b.decrypt(_tamper(genuine, field, value))
    assert await b.decrypt(genuine) == b"genuine"
    assert await b.decrypt(await a.encrypt(b"next")) == b"next"


async def test_too_far_ahead_is_refused() -> None:
    _, _, a, b = await _pair()
    genuine = await a.encrypt(b"ok")
    with pytest.raises(TooManySkipped):
        await b.decrypt(_tamper(genuine, "n", 5000))
    assert await b.decrypt(genuine) == b"ok"


async def test_foreign_initiation_is_a_session_mismatch() -> None:
    _, bob, _a, b = await _pair()
    other = await Session.initiate(DeviceKeys.generate(), _bundle(bob))
    fresh = await other.encrypt(b"new")
    with pytest.raises(SessionMismatch):
        await b.decrypt(fresh)
    replaced, text = await decrypt_incoming(bob, b, fresh)
    assert replaced is not b
    assert text == b"new"


async def test_serialize_and_restore_mid_conversation() -> None:
    alice, bob = DeviceKeys.generate(), DeviceKeys.generate()
    pending = await Session.initiate(alice, _bundle(bob))
    a = Session.from_bytes(pending.to_bytes())  # restored before the first send
    b, _ = await Session.accept(bob, await a.encrypt(b"hi"))
    late = [await a.encrypt(f"late{i}".encode()) for i in range(3)]
    assert await b.decrypt(late[2]) == b"late2"  # keys for late0/1 are now skipped keys
    a = Session.from_bytes(a.to_bytes())
    b = Session.from_bytes(b.to_bytes())
    assert await b.decrypt(late[0]) == b"late0"
    for i in range(5):
        assert await a.decrypt(await b.encrypt(b"b%d" % i)) == b"b%d" % i
        a, b = Session.from_bytes(a.to_bytes()), Session.from_bytes(b.to_bytes())
        assert await b.decrypt(await a.encrypt(b"a%d" % i)) == b"a%d" % i
    assert await b.decrypt(late[1]) == b"late1"
    with pytest.raises(DuplicateMessage):
        await b.decrypt(late[2])
