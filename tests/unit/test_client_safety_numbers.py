"""Safety numbers (pure): symmetric, 60 digits, sensitive to every input; and the trust
rule for identity keys seen again."""

from __future__ import annotations

import hashlib

import pytest

from tidings.client.crypto.fingerprint import (
    Party,
    display,
    grouped,
    half,
    normalize,
    safety_number,
)
from tidings.client.trust import Identity, KeyChange, Trust, decide

ALICE = Party("a1b2c3d4-0000-4000-8000-000000000001", bytes(range(32)))
BOB = Party("a1b2c3d4-0000-4000-8000-000000000002", bytes(range(32, 64)))


def test_the_number_is_the_same_whoever_computes_it() -> None:
    number = safety_number(ALICE, BOB)
    assert number == safety_number(BOB, ALICE)
    assert len(number) == 60
    assert number.isdigit()
    assert number in (half(ALICE) + half(BOB), half(BOB) + half(ALICE))
    assert number[:30] <= number[30:]


def test_a_half_follows_the_published_construction() -> None:
    """SHA-512 over version || key || id, re-hashed with the key, 5-byte chunks mod 1e5:
    checked here with a few iterations, written out longhand."""
    digest = hashlib.sha512(b"\x00\x00" + ALICE.identity_key + ALICE.stable_id.encode()).digest()
    for _ in range(3):
        digest = hashlib.sha512(digest + ALICE.identity_key).digest()
    expected = "".join(
        str(int.from_bytes(digest[i : i + 5], "big") % 100000).zfill(5) for i in range(0, 30, 5)
    )
    assert half(ALICE, iterations=3) == expected
    assert half(ALICE, iterations=3) != half(ALICE, iterations=4)


@pytest.mark.parametrize(
    "changed",
    [
        Party(ALICE.stable_id, bytes([1]) + ALICE.identity_key[1:]),  # one key bit
        Party(ALICE.stable_id[:-1] + "9", ALICE.identity_key),  # the identifier
    ],
)
def test_any_change_of_key_or_identifier_changes_the_number(changed: Party) -> None:
    assert safety_number(changed, BOB) != safety_number(ALICE, BOB)


def test_shown_as_twelve_groups_of_five_and_read_back_with_any_spacing() -> None:
    number = safety_number(ALICE, BOB)
    groups = grouped(number)
    assert len(groups) == 12
    assert all(len(g) == 5 for g in groups)
    lines = display(number).splitlines()
    assert [len(line.split()) for line in lines] == [4, 4, 4]
    assert normalize(display(number)) == number
    assert normalize(" ".join(groups) + "\n") == number


def test_an_empty_identity_key_is_refused() -> None:
    with pytest.raises(ValueError, match="identity key is needed"):
        half(Party("x", b""))


KEY, NEW_KEY = b"k" * 32, b"n" * 32


def test_first_key_is_trusted_on_first_use() -> None:
    record, change = decide(None, "bob", KEY)
    assert (record, change) == (Identity("bob", KEY, Trust.UNVERIFIED), None)


@pytest.mark.parametrize("trust", list(Trust))
def test_the_same_key_again_changes_nothing(trust: Trust) -> None:
    stored = Identity("bob", KEY, trust)
    assert decide(stored, "bob", KEY) == (stored, None)


def test_a_new_key_of_an_unverified_contact_is_a_change_that_does_not_block() -> None:
    record, change = decide(Identity("bob", KEY, Trust.UNVERIFIED), "bob", NEW_KEY)
    assert record == Identity("bob", NEW_KEY, Trust.UNVERIFIED, KEY)
    assert change == KeyChange("bob", was_verified=False)


@pytest.mark.parametrize("trust", [Trust.VERIFIED, Trust.CHANGED])
def test_a_new_key_of_a_verified_contact_blocks_until_accepted(trust: Trust) -> None:
    record, change = decide(Identity("bob", KEY, trust), "bob", NEW_KEY)
    assert record == Identity("bob", NEW_KEY, Trust.CHANGED, KEY)
    assert change == KeyChange("bob", was_verified=True)
