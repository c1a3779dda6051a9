"""Safety numbers: a numeric fingerprint of two accounts' identity keys.

Built the way Signal describes its numeric fingerprints. For each side, a digest starts
as SHA-512 over ``version (2 bytes, big-endian) || identity public key || stable
identifier`` and is then re-hashed ``ITERATIONS`` times as SHA-512 over ``digest ||
identity public key``; the first 30 bytes become 30 digits: six 5-byte big-endian
chunks, each taken modulo 100000 and written as 5 digits. The safety number is the two
30-digit halves joined in sorted order, so both people compute the same 60 digits no
matter who asks. Our stable identifier is the account's user id (it survives a number
change; a re-registration keeps it but brings a new identity key, which changes the
number).

Shown as 12 groups of 5 digits (:func:`grouped`), in 3 lines of 4 as Signal lays them out
(:func:`display`). The iterations make finding a second key with a matching half costly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

VERSION = 0
ITERATIONS = 5200
HALF_DIGITS = 30
GROUP = 5
_CHUNK_BYTES = 5


@dataclass(frozen=True)
class Party:
    """One side of a conversation: its stable identifier and identity public key."""

    stable_id: str
    identity_key: bytes


def half(party: Party, *, iterations: int = ITERATIONS) -> str:
    """The 30 digits one party contributes to a safety number."""
    if not party.identity_key:
        raise ValueError("an identity key is needed for a safety number")
    digest = hashlib.sha512(
        VERSION.to_bytes(2, "big") + party.identity_key + party.stable_id.encode()
    ).digest()
    for _ in range(iterations):
        digest = hashlib.sha512(digest + party.identity_key).digest()
    chunks = (
        int.from_bytes(digest[i : i + _CHUNK_BYTES], "big") % 100_000
        for i in range(0, HALF_DIGITS, _CHUNK_BYTES)
    )
    return "".join(f"{chunk:05d}" for chunk in chunks)


def safety_number(local: Party, remote: Party, *, iterations: int = ITERATIONS) -> str:
    """The 60-digit safety number of ``local`` and ``remote`` (symmetric in the two)."""
    ours, theirs = half(local, iterations=iterations), half(remote, iterations=iterations)
    return ours + theirs if ours <= theirs else theirs + ours


def grouped(number: str) -> list[str]:
    """The 12 groups of 5 digits people read to each other."""
    return [number[i : i + GROUP] for i in range(0, len(number), GROUP)]


def display(number: str) -> str:
    """Three lines of four groups."""
    groups = grouped(number)
    return "\n".join(" ".join(groups[i : i + 4]) for i in range(0, len(groups), 4))


def normalize(typed: str) -> str:
    """Digits only, so a number read back with spaces or line breaks compares equal."""
    return "".join(ch for ch in typed if ch.isdigit())
