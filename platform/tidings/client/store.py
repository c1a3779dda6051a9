"""Local state of one account on one device: a SQLite file that never leaves it.

Holds tokens, device keys, 1:1 sessions, contacts' identity keys
(:mod:`tidings.client.trust`), sender keys, the decrypted history (with an FTS5 index:
the server cannot search, the client can) and the server ids already processed
(delivery is at-least-once; the app layer sees each message once).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidings.client.outbox_store import OutboxStore, Queued
from tidings.client.private_state import private_companions, private_database
from tidings.client.trust import TrustStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, state BLOB NOT NULL,
  PRIMARY KEY (user_id, device_id)
);
CREATE TABLE IF NOT EXISTS registrations (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, registration_id INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id)
);
CREATE TABLE IF NOT EXISTS archived_sessions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS own_sender_keys (
  group_id TEXT PRIMARY KEY, state BLOB NOT NULL, members TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS group_receivers (group_id TEXT PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  server_id TEXT NOT NULL UNIQUE, conversation TEXT NOT NULL,
  sender_user TEXT NOT NULL, sender_device INTEGER NOT NULL, timestamp INTEGER NOT NULL,
  kind TEXT NOT NULL, text TEXT NOT NULL, extra TEXT NOT NULL, status TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
  text, content='messages', content_rowid='id'
);
CREATE TRIGGER IF NOT EXISTS messages_ai AFTER INSERT ON messages BEGIN
  INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS messages_ad AFTER DELETE ON messages BEGIN
  INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS messages_au AFTER UPDATE OF text ON messages BEGIN
  INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
  INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TABLE IF NOT EXISTS processed (server_id TEXT PRIMARY KEY);
"""


STATUS_ORDER = {"sent": 0, "received": 0, "delivered": 1, "read": 2}
"""Message statuses in the order receipts (and reading) move them."""


@dataclass(frozen=True)
class StoredMessage:
    server_id: str
    conversation: str
    sender_user: str
    sender_device: int
    timestamp: int
    kind: str
    text: str
    extra: dict[str, Any]
    status: str


def _message(row: Any) -> StoredMessage:
    return StoredMessage(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        int(row[3]),
        int(row[4]),
        str(row[5]),
        str(row[6]),
        json.loads(row[7]),
        str(row[8]),
    )


_COLUMNS = (
    "server_id, conversation, sender_user, sender_device, timestamp, kind, text, extra, status"
)


class LocalStore:
    def __init__(self, path: Path) -> None:
        private_database(path)  # directory 0700, files 0600, ours (or refused)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        private_companions(path)
        self.trust = TrustStore(self.db)
        """Contacts' identity keys and whether the user verified them."""
        self.outbox = OutboxStore(self.db)
        """What waits for the server: texts, other content and files."""

    def close(self) -> None:
        self.db.close()

    # key/value ---------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv VALUES(?,?)", (key, value))

    def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE key=?", (key,))

    def get_json(self, key: str) -> Any:
        raw = self.get(key)
        return None if raw is None else json.loads(raw)

    def put_json(self, key: str, value: Any) -> None:
        self.put(key, json.dumps(value).encode())

    # sessions ----------------------------------------------------------------------
    def session(self, user_id: str, device_id: int) -> bytes | None:
        row = self.db.execute(
            "SELECT state FROM sessions WHERE user_id=? AND device_id=?", (user_id, device_id)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def put_session(self, user_id: str, device_id: int, state: bytes) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO sessions VALUES(?,?,?)", (user_id, device_id, state)
        )

    def drop_session(self, user_id: str, device_id: int) -> None:
        for table in ("sessions", "archived_sessions", "registrations"):
            self.db.execute(
                f"DELETE FROM {table} WHERE user_id=? AND device_id=?", (user_id, device_id)
            )

    def registration_id(self, user_id: str, device_id: int) -> int | None:
        """The registration id of the device a session was opened with (from its bundle),
        sent along so the server can say the device was re-registered since."""
        row = self.db.execute(
            "SELECT registration_id FROM registrations WHERE user_id=? AND device_id=?",
            (user_id, device_id),
        ).fetchone()
        return None if row is None else int(row[0])

    def put_registration_id(self, user_id: str, device_id: int, registration_id: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO registrations VALUES(?,?,?)",
            (user_id, device_id, registration_id),
        )

    def archived_sessions(self, user_id: str, device_id: int) -> list[tuple[int, bytes]]:
        """Older sessions with one device, newest first."""
        rows = self.db.execute(
            "SELECT seq, state FROM archived_sessions WHERE user_id=? AND device_id=? "
            "ORDER BY seq DESC",
            (user_id, device_id),
        ).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def archive_session(self, user_id: str, device_id: int, state: bytes, keep: int) -> None:
        self.db.execute(
            "INSERT INTO archived_sessions(user_id, device_id, state) VALUES(?,?,?)",
            (user_id, device_id, state),
        )
        for seq, _ in self.archived_sessions(user_id, device_id)[keep:]:
            self.drop_archived_session(seq)

    def drop_archived_session(self, seq: int) -> None:
        self.db.execute("DELETE FROM archived_sessions WHERE seq=?", (seq,))

    def session_devices(self, user_id: str) -> list[int]:
        rows = self.db.execute(
            "SELECT device_id FROM sessions WHERE user_id=? ORDER BY device_id", (user_id,)
        ).fetchall()
        return [int(r[0]) for r in rows]

    # sender keys -------------------------------------------------------------------
    def own_sender_key(self, group_id: str) -> tuple[bytes, list[str]] | None:
        row = self.db.execute(
            "SELECT state, members FROM own_sender_keys WHERE group_id=?", (group_id,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), list(json.loads(row[1])))

    def put_own_sender_key(self, group_id: str, state: bytes, members: list[str]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO own_sender_keys VALUES(?,?,?)",
            (group_id, state, json.dumps(sorted(members))),
        )

    def group_receiver(self, group_id: str) -> bytes | None:
        row = self.db.execute(
            "SELECT state FROM group_receivers WHERE group_id=?", (group_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def put_group_receiver(self, group_id: str, state: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO group_receivers VALUES(?,?)", (group_id, state))

    # history -----------------------------------------------------------------------
    def processed(self, server_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM processed WHERE server_id=?", (server_id,)).fetchone()
        return row is not None

    def mark_processed(self, server_id: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO processed VALUES(?)", (server_id,))

    def add_message(self, message: StoredMessage) -> bool:
        cur = self.db.execute(
            f"INSERT OR IGNORE INTO messages({_COLUMNS}) VALUES(?,?,?,?,?,?,?,?,?)",
            (
                message.server_id,
                message.conversation,
                message.sender_user,
                message.sender_device,
                message.timestamp,
                message.kind,
                message.text,
                json.dumps(message.extra),
                message.status,
            ),
        )
        return cur.rowcount == 1

    def set_status(self, server_ids: list[str], status: str) -> None:
        """Move sent messages forward (sent -> delivered -> read), never back: receipts
        travel separately and may arrive in either order."""
        rank = STATUS_ORDER.get(status)
        if rank is None or not server_ids:
            return
        marks = ",".join("?" * len(server_ids))
        before = [s for s, r in STATUS_ORDER.items() if r < rank]
        self.db.execute(
            f"UPDATE messages SET status=? WHERE server_id IN ({marks}) "
            f"AND status IN ({','.join('?' * len(before))})",
            (status, *server_ids, *before),
        )

    def history(self, conversation: str | None = None, limit: int = 50) -> list[StoredMessage]:
        where, args = ("WHERE conversation=?", (conversation,)) if conversation else ("", ())
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM messages {where} ORDER BY id DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [_message(r) for r in reversed(rows)]

    def message(self, server_id: str) -> StoredMessage | None:
        """The stored message with this server id, if any."""
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE server_id=?", (server_id,)
        ).fetchone()
        return None if row is None else _message(row)

    def update_message(self, server_id: str, text: str, extra: dict[str, Any]) -> None:
        """New text (an edit, a delete) or extra (reactions); the search index follows
        (the triggers above), so an old wording cannot be found any more."""
        self.db.execute(
            "UPDATE messages SET text=?, extra=? WHERE server_id=?",
            (text, json.dumps(extra), server_id),
        )

    def remove_messages(self, server_ids: list[str]) -> None:
        """Gone from the history and, by trigger, from the search index."""
        for server_id in server_ids:
            self.db.execute("DELETE FROM messages WHERE server_id=?", (server_id,))

    def replies_to(self, server_id: str) -> list[StoredMessage]:
        """The stored replies that quote message ``server_id``."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE json_extract(extra, '$.reply_to') = ?",
            (server_id,),
        ).fetchall()
        return [_message(r) for r in rows]

    def expired(self, now_ms: int) -> list[str]:
        """Server ids of disappearing messages whose time has come."""
        rows = self.db.execute(
            "SELECT server_id FROM messages WHERE json_extract(extra, '$.expires_at') <= ?",
            (now_ms,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def next_expiry(self) -> int | None:
        """When the next disappearing message is due (ms), if any."""
        row = self.db.execute(
            "SELECT MIN(json_extract(extra, '$.expires_at')) FROM messages"
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def conversations(self) -> list[str]:
        """Every conversation in the history, most recently active first."""
        rows = self.db.execute(
            "SELECT conversation FROM messages GROUP BY conversation ORDER BY MAX(id) DESC"
        ).fetchall()
        return [str(r[0]) for r in rows]

    # outbox ------------------------------------------------------------------------
    def queue_outgoing(self, client_id: str, conversation: str, text: str) -> int:
        """Keep a text the server could not be reached for; returns how many wait."""
        return self.outbox.queue(Queued(client_id, conversation, text))

    def outgoing(self) -> list[tuple[str, str, str]]:
        """Everything queued, oldest first: (client_id, conversation, text); the rest of
        each entry is in :attr:`outbox`."""
        return [(q.client_id, q.conversation, q.text) for q in self.outbox.entries()]

    def drop_outgoing(self, client_id: str) -> None:
        self.outbox.drop(client_id)

    def search(self, words: str, limit: int = 20) -> list[StoredMessage]:
        """Messages containing every word of ``words`` (see :func:`fts_query`)."""
        query = fts_query(words)
        if not query:
            return []
        columns = ", ".join("m." + c.strip() for c in _COLUMNS.split(","))
        rows = self.db.execute(
            f"SELECT {columns} FROM messages_fts f "
            "JOIN messages m ON m.id = f.rowid WHERE messages_fts MATCH ? ORDER BY m.id LIMIT ?",
            (query, limit),
        ).fetchall()
        return [_message(r) for r in rows]


def fts_query(words: str) -> str:
    """An FTS5 query matching messages that contain all of ``words``, as typed.

    Each whitespace-separated word becomes a quoted FTS5 string, so nothing a person
    types is read as query syntax (``NOT``, ``it's``, ``end-to-end``, ``bob,``,
    ``to:``); FTS5 then splits it into tokens like the indexed text, which makes
    ``end-to-end`` the phrase "end to end". A trailing ``*`` keeps its meaning of "words
    starting with". Words with no letters or digits (punctuation) are left out; an
    empty result means there is nothing to search for."""
    terms = []
    for word in words.split():
        prefix = word.endswith("*")
        core = word.rstrip("*")
        if not any(ch.isalnum() for ch in core):
            continue
        quoted = '"' + core.replace('"', '""') + '"'
        terms.append(quoted + "*" if prefix else quoted)
    return " ".join(terms)
