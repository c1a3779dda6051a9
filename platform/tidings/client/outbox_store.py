"""The outbox's rows in the account's local SQLite file (see :mod:`tidings.client.outbox`).

A row is a text, or any other content (a reply, reaction, edit, delete: its payload as
it will be encrypted), or a file: its encrypted bytes are kept from the moment it was
queued, so deleting or changing the file afterwards changes nothing, and its media id
once uploaded, so a retry never uploads it twice. The local store is private to the
user (``0600``) and holds the decrypted history already; the file's bytes are kept
sealed all the same and are dropped once uploaded.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL UNIQUE,
  conversation TEXT NOT NULL, text TEXT NOT NULL
);
"""
ADDED = {"payload": "TEXT", "blob": "BLOB", "media_id": "TEXT"}
"""Columns newer than the first outbox (texts only): added to older stores on open."""

TEXT = "text"


@dataclass(frozen=True)
class Queued:
    client_id: str
    conversation: str
    text: str
    """What it says, as listed and reported (a file: its name)."""
    payload: dict[str, Any] | None = None
    """The content to encrypt; None for a plain text, whose timer applies when it goes."""
    blob: bytes | None = None
    """A file's encrypted bytes, until uploaded."""
    media_id: str | None = None
    """A file's media id, once uploaded."""

    @property
    def kind(self) -> str:
        return TEXT if self.payload is None else str(self.payload["t"])


class OutboxStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)
        have = {str(row[1]) for row in db.execute("PRAGMA table_info(outbox)")}
        for column, kind in ADDED.items():
            if column not in have:
                db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")

    def queue(self, entry: Queued) -> int:
        """Keep ``entry`` after what waits (a client id queued before stays as it was);
        returns how many wait."""
        payload = None if entry.payload is None else json.dumps(entry.payload)
        self.db.execute(
            "INSERT OR IGNORE INTO outbox(client_id, conversation, text, payload, blob, "
            "media_id) VALUES(?,?,?,?,?,?)",
            (entry.client_id, entry.conversation, entry.text, payload, entry.blob, entry.media_id),
        )
        return self.count()

    def entries(self) -> list[Queued]:
        """Everything queued, oldest first."""
        rows = self.db.execute(
            "SELECT client_id, conversation, text, payload, blob, media_id FROM outbox ORDER BY seq"
        ).fetchall()
        return [
            Queued(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                None if r[3] is None else json.loads(r[3]),
                None if r[4] is None else bytes(r[4]),
                None if r[5] is None else str(r[5]),
            )
            for r in rows
        ]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def uploaded(self, client_id: str, media_id: str) -> None:
        """A queued file's bytes reached the server as ``media_id``: kept so a retry
        sends that one, and its sealed bytes are no longer needed here."""
        self.db.execute(
            "UPDATE outbox SET media_id=?, blob=NULL WHERE client_id=?", (media_id, client_id)
        )

    def drop(self, client_id: str) -> None:
        self.db.execute("DELETE FROM outbox WHERE client_id=?", (client_id,))
