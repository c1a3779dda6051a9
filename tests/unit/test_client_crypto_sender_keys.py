"""Client crypto group sender keys: one ciphertext per group, signatures, rekey."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.client.crypto.errors import (
    BadSignature,
    DecryptionFailed,
    DuplicateMessage,
    MalformedMessage,
    TooManySkipped,
    UnknownSenderKey,
)
from tidings.client.crypto.sender_keys import (
    GroupReceiver,
    OwnSenderKey,
    SenderKeyDistribution,
    SenderKeyMessage,
    SenderKeyReceiver,
)

GROUP = "g-1"


class Member:
    """One device in a group: its own sending key and its view of everyone else's."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.own = OwnSenderKey.create(GROUP)
        self.view = GroupReceiver(GROUP)

    def send(self, text: bytes) -> bytes:
        self.own, body = self.own.encrypt(text)
        return body

    def distribute_to(self, others: list[Member]) -> None:
        # over the 1:1 sessions in the real SDK; the wire bytes round-trip here
        wire = self.own.distribution().to_bytes()
        for other in others:
            other.view.process_distribution(self.name, SenderKeyDistribution.from_bytes(wire))


def _group(names: str) -> list[Member]:
    members = [Member(n) for n in names]
    for m in members:
        m.distribute_to([o for o in members if o is not m])
    return members


def test_one_ciphertext_reads_for_every_member() -> None:
    members = _group("abcd")
    for sender in members:
        body = sender.send(f"from {sender.name}".encode())
        for other in members:
            if other is not sender:
                assert other.view.decrypt(sender.name, body) == f"from {sender.name}".encode()


def test_removed_member_cannot_read_after_rekey() -> None:
    a, b, c, d = _group("abcd")
    held_by_d = a.own.distribution()  # what d received from a while a member
    before = a.send(b"before removal")
    assert d.view.decrypt("a", before) == b"before removal"
    # d leaves: every remaining member rekeys and distributes only to the others
    remaining = [a, b, c]
    for m in remaining:
        m.own = OwnSenderKey.create(GROUP)
        m.distribute_to([o for o in remaining if o is not m])
        m.view.forget("d")
    for m in remaining:
        body = m.send(f"secret from {m.name}".encode())
        with pytest.raises(UnknownSenderKey):
            d.view.decrypt(m.name, body)
        for o in remaining:
            if o is not m:
                assert o.view.decrypt(m.name, body) == f"secret from {m.name}".encode()
    # d's best effort: relabel the new message with the old key id (fails the old
    # signature), or skip signatures and run the old chain under the new key id (the
    # AEAD fails: the new chain key is unrelated to anything d ever held)
    msg = SenderKeyMessage.from_bytes(a.send(b"still secret"))
    with pytest.raises(BadSignature):
        d.view.decrypt("a", replace(msg, key_id=held_by_d.key_id).to_bytes())
    new_signing = a.own.distribution().signing_key
    guess = SenderKeyReceiver(replace(held_by_d, key_id=msg.key_id, signing_key=new_signing))
    with pytest.raises(DecryptionFailed):
        guess.decrypt(msg)
    # and a removed member's own later messages are refused by the others
    with pytest.raises(UnknownSenderKey):
        a.view.decrypt("d", d.send(b"still here?"))


def test_messages_sent_just_before_a_rekey_still_decrypt() -> None:
    a, b = _group("ab")
    in_flight = a.send(b"old key")
    a.own = OwnSenderKey.create(GROUP)
    a.distribute_to([b])
    assert b.view.decrypt("a", a.send(b"new key")) == b"new key"
    assert b.view.decrypt("a", in_flight) == b"old key"


def test_forged_signature_is_rejected() -> None:
    a, b, _c = _group("abc")
    held_by_c = a.own.distribution()
    body = json.loads(a.send(b"genuine"))
    sig = bytearray(SenderKeyMessage.from_bytes(json.dumps(body).encode()).signature)
    sig[0] ^= 1
    forged = replace(SenderKeyMessage.from_bytes(json.dumps(body).encode()), signature=bytes(sig))
    with pytest.raises(BadSignature):
        b.view.decrypt("a", forged.to_bytes())
    # an insider (c) knows a's chain key but not a's signing key
    insider = OwnSenderKey(
        GROUP,
        a.own.key_id,
        held_by_c.iteration,
        held_by_c.chain_key,
        Ed25519PrivateKey.generate().private_bytes_raw(),
    )
    _, spoof = insider.encrypt(b"I am a")
    with pytest.raises(BadSignature):
        b.view.decrypt("a", spoof)
    # the genuine message is still fine and the state was not advanced by the forgeries
    assert b.view.decrypt("a", json.dumps(body).encode()) == b"genuine"


def test_replay_rejected() -> None:
    a, b = _group("ab")
    first, second = a.send(b"1"), a.send(b"2")
    assert b.view.decrypt("a", second) == b"2"
    assert b.view.decrypt("a", first) == b"1"
    for body in (first, second):
        with pytest.raises(DuplicateMessage):
            b.view.decrypt("a", body)


def test_bounded_skip_window() -> None:
    a, b = _group("ab")
    far = OwnSenderKey(GROUP, a.own.key_id, 0, a.own.chain_key, a.own.signing_seed)
    for _ in range(1001):
        far, _ = far.encrypt(b"")
    _, body = far.encrypt(b"too far")
    with pytest.raises(TooManySkipped):
        b.view.decrypt("a", body)
    assert b.view.decrypt("a", a.send(b"in window")) == b"in window"


def test_late_joiner_reads_only_from_its_distribution_on() -> None:
    a, _b = _group("ab")
    earlier = a.send(b"before join")
    e = Member("e")
    a.distribute_to([e])
    with pytest.raises(DuplicateMessage):
        e.view.decrypt("a", earlier)
    assert e.view.decrypt("a", a.send(b"after join")) == b"after join"


def test_redistribution_of_a_held_key_does_not_rewind() -> None:
    a, b = _group("ab")
    stale = a.own.distribution()
    body = a.send(b"once")
    assert b.view.decrypt("a", body) == b"once"
    b.view.process_distribution("a", stale)
    with pytest.raises(DuplicateMessage):
        b.view.decrypt("a", body)


def test_wrong_group_is_refused() -> None:
    _a, b = _group("ab")
    other = OwnSenderKey.create("g-2")
    with pytest.raises(MalformedMessage):
        b.view.process_distribution("a", other.distribution())
    _, body = other.encrypt(b"x")
    with pytest.raises(MalformedMessage):
        b.view.decrypt("a", body)


@settings(max_examples=40, deadline=None)
@given(st.permutations(list(range(10))))
def test_out_of_order_within_the_window(order: list[int]) -> None:
    a, b = _group("ab")
    bodies = [a.send(b"%d" % i) for i in range(10)]
    for i in order:
        assert b.view.decrypt("a", bodies[i]) == b"%d" % i
    for body in bodies:
        with pytest.raises(DuplicateMessage):
            b.view.decrypt("a", body)


def test_state_round_trips() -> None:
    a, b = _group("ab")
    bodies = [a.send(b"%d" % i) for i in range(4)]
    b.view.decrypt("a", bodies[3])
    a.own = OwnSenderKey.from_bytes(a.own.to_bytes())
    b.view = GroupReceiver.from_bytes(b.view.to_bytes())
    assert b.view.decrypt("a", bodies[1]) == b"1"
    assert b.view.decrypt("a", a.send(b"more")) == b"more"
    with pytest.raises(DuplicateMessage):
        b.view.decrypt("a", bodies[3])
    assert GroupReceiver.from_bytes(b.view.to_bytes()).to_bytes() == b.view.to_bytes()
