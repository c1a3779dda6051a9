"""Envelopes: wire encoding and the client view."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.core.envelopes import Envelope, EnvelopeKind, ReceiptKind

_envelopes = st.builds(
    Envelope,
    server_id=st.text(),
    kind=st.sampled_from(EnvelopeKind),
    timestamp=st.integers(min_value=0, max_value=2**53),
    sender_user=st.text(),
    sender_device=st.integers(min_value=1, max_value=2**31),
    recipient_user=st.text(),
    recipient_device=st.integers(min_value=1, max_value=2**31),
    client_id=st.none() | st.text(),
    group_id=st.none() | st.text(),
    body=st.none() | st.text(),
    receipt_kind=st.none() | st.sampled_from(ReceiptKind),
    message_ids=st.lists(st.text(), max_size=5).map(tuple),
    typing=st.none() | st.sampled_from(["started", "stopped"]),
    ephemeral=st.booleans(),
    epoch=st.integers(min_value=0, max_value=2**40),
)


@given(_envelopes)
def test_encode_decode_round_trip(envelope: Envelope) -> None:
    decoded = Envelope.decode(envelope.encode())
    assert decoded == envelope
    assert isinstance(decoded.kind, EnvelopeKind)
    assert decoded.receipt_kind is None or isinstance(decoded.receipt_kind, ReceiptKind)
    assert isinstance(decoded.message_ids, tuple)


def test_receipt_round_trip() -> None:
    receipt = Envelope(
        server_id="r1",
        kind=EnvelopeKind.RECEIPT,
        timestamp=5,
        sender_user="bob",
        sender_device=2,
        recipient_user="alice",
        recipient_device=1,
        receipt_kind=ReceiptKind.READ,
        message_ids=("m1", "m2"),
    )
    decoded = Envelope.decode(receipt.encode())
    assert decoded == receipt
    assert decoded.receipt_kind is ReceiptKind.READ


def test_for_device_changes_only_the_recipient() -> None:
    envelope = Envelope("s", EnvelopeKind.MESSAGE, 1, "alice", 1, "bob", 1, body="x")
    moved = envelope.for_device("carol", 3)
    assert (moved.recipient_user, moved.recipient_device) == ("carol", 3)
    assert moved.body == "x"
    assert moved.server_id == "s"


def test_to_client_message_shape() -> None:
    envelope = Envelope(
        server_id="s1",
        kind=EnvelopeKind.MESSAGE,
        timestamp=1234,
        sender_user="alice",
        sender_device=2,
        recipient_user="bob",
        recipient_device=1,
        client_id="m1",
        group_id="g1",
        body="Y2lwaGVy",
        epoch=7,
    )
    assert envelope.to_client() == {
        "server_id": "s1",
        "type": "message",
        "timestamp": 1234,
        "from": {"user": "alice", "device": 2},
        "client_id": "m1",
        "group": "g1",
        "body": "Y2lwaGVy",
    }


def test_to_client_minimal_shape_hides_routing_fields() -> None:
    envelope = Envelope("s1", EnvelopeKind.MESSAGE, 1, "alice", 1, "bob", 3, ephemeral=True)
    assert envelope.to_client() == {
        "server_id": "s1",
        "type": "message",
        "timestamp": 1,
        "from": {"user": "alice", "device": 1},
    }


def test_to_client_receipt_and_typing() -> None:
    receipt = Envelope(
        "r1",
        EnvelopeKind.RECEIPT,
        2,
        "bob",
        1,
        "alice",
        1,
        receipt_kind=ReceiptKind.DELIVERED,
        message_ids=("a", "b"),
    )
    assert receipt.to_client()["receipt"] == {"kind": "delivered", "message_ids": ["a", "b"]}
    typing = Envelope("t1", EnvelopeKind.TYPING, 3, "bob", 1, "alice", 1, typing="started")
    client = typing.to_client()
    assert client["type"] == "typing"
    assert client["typing"] == "started"
    assert "receipt" not in client


@given(_envelopes)
def test_to_client_never_leaks_recipient_or_epoch(envelope: Envelope) -> None:
    client = envelope.to_client()
    assert set(client) <= {
        "server_id",
        "type",
        "timestamp",
        "from",
        "client_id",
        "group",
        "body",
        "receipt",
        "typing",
    }
    assert client["type"] == envelope.kind.value
