"""The records that bound what strangers can do (``core.relationships``): pure, no store."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.core.envelopes import Envelope, EnvelopeKind, ReceiptKind
from tidings.core.relationships import (
    CONVERSATION_TTL_S,
    RECEIVED_TTL_S,
    check_receipt,
    conversation_key,
    conversation_records,
    received_key,
    received_records,
)


def envelope(
    server_id: str, sender: str, kind: EnvelopeKind = EnvelopeKind.MESSAGE, device: int = 1
) -> Envelope:
    return Envelope(
        server_id=server_id,
        kind=kind,
        timestamp=1,
        sender_user=sender,
        sender_device=1,
        recipient_user="reader",
        recipient_device=device,
        receipt_kind=ReceiptKind.DELIVERED if kind is EnvelopeKind.RECEIPT else None,
    )


@given(st.text(min_size=1), st.text(min_size=1))
def test_a_conversation_is_one_record_whichever_side_writes(one: str, other: str) -> None:
    assert conversation_key(one, other) == conversation_key(other, one)


def test_keys_are_short_and_apart_for_every_field() -> None:
    keys = {
        received_key("reader", "sender", "m1"),
        received_key("sender", "reader", "m1"),
        received_key("reader", "sender", "m2"),
        received_key("reader", "other", "m1"),
        conversation_key("reader", "sender"),
        conversation_key("reader", "other"),
    }
    assert len(keys) == 6
    assert all(len(key) <= 25 for key in keys)
    assert not any("reader" in key or "sender" in key for key in keys)


def test_only_messages_from_others_are_recorded_as_received_once_per_reader() -> None:
    stored = [
        envelope("m1", "alice"),
        envelope("m1", "alice", device=2),  # the reader's second device: one record
        envelope("r1", "alice", EnvelopeKind.RECEIPT),  # a receipt is never read
        envelope("m2", "reader"),  # a copy of the reader's own message
        envelope("m3", "bob"),
    ]
    assert received_records(stored) == [
        (received_key("reader", "alice", "m1"), b"1", RECEIVED_TTL_S),
        (received_key("reader", "bob", "m3"), b"1", RECEIVED_TTL_S),
    ]


def test_direct_messages_record_each_conversation_once_and_never_with_oneself() -> None:
    assert conversation_records("alice", ["bob", "alice", "bob", "carol"]) == [
        (conversation_key("alice", "bob"), b"1", CONVERSATION_TTL_S),
        (conversation_key("alice", "carol"), b"1", CONVERSATION_TTL_S),
    ]


def test_a_receipt_keeps_the_ids_on_record_in_order_once_each() -> None:
    check = check_receipt(["a", "x", "b", "a", "y"], [b"1", None, b"1", b"1", None])
    assert check.known == ("a", "b")
    assert check.dropped == ("x", "y")
