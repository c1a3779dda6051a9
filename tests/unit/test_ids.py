"""Deterministic server ids and receipt ids."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from tidings.core.ids import receipt_id, server_id


def test_server_id_is_deterministic_uuid() -> None:
    first = server_id("alice", 1, "m1")
    assert first == server_id("alice", 1, "m1")
    assert uuid.UUID(first).version == 5


def test_server_id_differs_per_sender_device_and_client_id() -> None:
    ids = {
        server_id("alice", 1, "m1"),
        server_id("bob", 1, "m1"),
        server_id("alice", 2, "m1"),
        server_id("alice", 1, "m2"),
    }
    assert len(ids) == 4


# Lone surrogates cannot be UTF-8 encoded; ids reaching server_id never hold them.
_chars = st.characters(exclude_categories=["Cs"])
_user_ids = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/"), max_size=8
)
_sends = st.tuples(_user_ids, st.integers(1, 9), st.text(alphabet=_chars, max_size=8))


@given(_sends, _sends)
def test_server_id_equal_iff_inputs_equal(a: tuple[str, int, str], b: tuple[str, int, str]) -> None:
    assert (server_id(*a) == server_id(*b)) == (a == b)


def test_receipt_id_is_deterministic_and_distinct() -> None:
    rid = receipt_id("read", "bob", 1, "sid")
    assert rid == receipt_id("read", "bob", 1, "sid")
    assert uuid.UUID(rid).version == 5
    others = {
        receipt_id("delivered", "bob", 1, "sid"),
        receipt_id("read", "carol", 1, "sid"),
        receipt_id("read", "bob", 2, "sid"),
        receipt_id("read", "bob", 1, "sid2"),
    }
    assert rid not in others
    assert len(others) == 4


def test_receipt_id_and_server_id_use_different_namespaces() -> None:
    assert receipt_id("read", "bob", 1, "x") != server_id("read/bob", 1, "x")
