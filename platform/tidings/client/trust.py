"""Which identity key each contact has, and whether the user verified it.

The first identity key seen for a contact is trusted as is (trust on first use) and
remembered. A different key later is a *change*: the contact re-registered, restored
onto a new phone, or someone is in the middle. The client then shows a notice in the
conversation and keeps the history. For a contact the user had *verified* (compared the
safety number), the change also blocks sending until the user accepts the new key or
verifies it again: the old verification said nothing about the new key.

``decide`` is the pure rule; :class:`TrustStore` keeps the records in the account's
local SQLite file.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
  user_id TEXT PRIMARY KEY, identity_key BLOB NOT NULL, trust TEXT NOT NULL,
  previous_key BLOB
);
"""


class Trust(enum.StrEnum):
    UNVERIFIED = "unverified"
    """Known since first use; never compared by the user."""
    VERIFIED = "verified"
    """The user compared the safety number and marked it verified."""
    CHANGED = "changed"
    """The key changed after the user verified the old one: sending is refused until
    the user accepts the new key (or verifies it)."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    identity_key: bytes
    trust: Trust
    previous_key: bytes | None = None


@dataclass(frozen=True)
class KeyChange:
    """A contact's identity key is not the one remembered."""

    user_id: str
    was_verified: bool


class UntrustedIdentity(Exception):
    """Sending to a verified contact whose identity key changed since verification."""

    def __init__(self, user_id: str) -> None:
        super().__init__(
            f"the safety number with {user_id} changed since you verified it; compare the "
            "new one, then accept the new key (tidings verify --accept, /verify accept)"
        )
        self.user_id = user_id


class SafetyNumberMismatch(Exception):
    """The digits the user typed are not this conversation's safety number."""


def decide(stored: Identity | None, user_id: str, key: bytes) -> tuple[Identity, KeyChange | None]:
    """The record to keep after seeing ``key`` for ``user_id``, and the change, if any."""
    if stored is None:
        return Identity(user_id, key, Trust.UNVERIFIED), None
    if stored.identity_key == key:
        return stored, None
    was_verified = stored.trust is not Trust.UNVERIFIED
    trust = Trust.CHANGED if was_verified else Trust.UNVERIFIED
    return Identity(user_id, key, trust, stored.identity_key), KeyChange(user_id, was_verified)


class TrustStore:
    """Identity records on the account's local database connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)

    def get(self, user_id: str) -> Identity | None:
        row = self.db.execute(
            "SELECT identity_key, trust, previous_key FROM identities WHERE user_id=?",
            (user_id,),
        ).fetchone()
        if row is None:
            return None
        previous = None if row[2] is None else bytes(row[2])
        return Identity(user_id, bytes(row[0]), Trust(row[1]), previous)

    def put(self, identity: Identity) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO identities VALUES(?,?,?,?)",
            (
                identity.user_id,
                identity.identity_key,
                identity.trust.value,
                identity.previous_key,
            ),
        )

    def observe(self, user_id: str, key: bytes) -> KeyChange | None:
        """Remember ``key`` for ``user_id``; a change is returned (and stored)."""
        record, change = decide(self.get(user_id), user_id, key)
        self.put(record)
        return change

    def set_trust(self, user_id: str, trust: Trust) -> Identity:
        """Mark the remembered key; the user must have talked to ``user_id`` before."""
        stored = self.get(user_id)
        if stored is None:
            raise KeyError(user_id)
        updated = Identity(user_id, stored.identity_key, trust, stored.previous_key)
        self.put(updated)
        return updated

    def blocked(self, user_id: str) -> bool:
        stored = self.get(user_id)
        return stored is not None and stored.trust is Trust.CHANGED
