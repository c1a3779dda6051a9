"""MessageStore on SQLite: one inbox per device, ordered by an append sequence.

Acks flag rows; the contiguous acked prefix below the oldest pending row is removed
with one range delete, as the Cassandra engine does with its watermark. Acked server ids
are remembered for ``ACKED_MEMORY_S`` so a replayed delivery batch cannot bring an
acked envelope back (append stays idempotent after the row is gone).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tidings.core.model import InboxItem
from tidings.engines.embedded.sqlite import SqliteDb

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, server_id TEXT NOT NULL,
  envelope BLOB NOT NULL, acked INTEGER NOT NULL DEFAULT 0,
  UNIQUE (user_id, device_id, server_id)
);
CREATE INDEX IF NOT EXISTS inbox_by_device ON inbox(user_id, device_id, seq);
CREATE TABLE IF NOT EXISTS watermarks (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, acked_through INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acked (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, server_id TEXT NOT NULL,
  acked_at REAL NOT NULL, PRIMARY KEY (user_id, device_id, server_id)
) WITHOUT ROWID;
"""

ACKED_MEMORY_S = 7 * 24 * 3600
"""How long acked ids block re-appends; far longer than any bus replay."""


def _item(row: Any) -> InboxItem:
    return InboxItem(cursor=f"{int(row[0]):020d}", server_id=str(row[1]), envelope=bytes(row[2]))


class SqliteMessageStore:
    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    @classmethod
    def at(cls, path: Path) -> SqliteMessageStore:
        return cls(SqliteDb(path, SCHEMA))

    async def start(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def append(self, items: Sequence[tuple[str, int, str, bytes]]) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO inbox(user_id, device_id, server_id, envelope) "
                "SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM acked "
                "WHERE user_id=?1 AND device_id=?2 AND server_id=?3)",
                items,
            )
            return conn.total_changes - before

        return await self.db.run(fn)

    async def fetch(
        self, user_id: str, device_id: int, after: str | None, limit: int
    ) -> list[InboxItem]:
        after_seq = int(after) if after else 0

        def fn(conn: sqlite3.Connection) -> list[InboxItem]:
            rows = conn.execute(
                "SELECT seq, server_id, envelope FROM inbox "
                "WHERE user_id=? AND device_id=? AND seq>? AND acked=0 ORDER BY seq LIMIT ?",
                (user_id, device_id, after_seq, limit),
            ).fetchall()
            return [_item(r) for r in rows]

        return self.db.read(fn)

    async def ack(
        self,
        user_id: str,
        device_id: int,
        server_ids: Sequence[str],
        cursors: Mapping[str, str] | None = None,
    ) -> list[InboxItem]:
        now = time.time()

        def fn(conn: sqlite3.Connection) -> list[InboxItem]:
            marks = ",".join("?" * len(server_ids))
            rows = conn.execute(
                f"UPDATE inbox SET acked=1 WHERE user_id=? AND device_id=? AND acked=0 "
                f"AND server_id IN ({marks}) RETURNING seq, server_id, envelope",
                (user_id, device_id, *server_ids),
            ).fetchall()
            conn.execute(
                "DELETE FROM acked WHERE user_id=? AND device_id=? AND acked_at<?",
                (user_id, device_id, now - ACKED_MEMORY_S),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO acked VALUES(?,?,?,?)",
                [(user_id, device_id, str(r[1]), now) for r in rows],
            )
            oldest_pending = conn.execute(
                "SELECT min(seq) FROM inbox WHERE user_id=? AND device_id=? AND acked=0",
                (user_id, device_id),
            ).fetchone()[0]
            newest = conn.execute(
                "SELECT max(seq) FROM inbox WHERE user_id=? AND device_id=?", (user_id, device_id)
            ).fetchone()[0]
            if newest is not None:
                through = int(newest) if oldest_pending is None else int(oldest_pending) - 1
                conn.execute(
                    "DELETE FROM inbox WHERE user_id=? AND device_id=? AND seq<=?",
                    (user_id, device_id, through),
                )
                conn.execute(
                    "INSERT INTO watermarks VALUES(?,?,?) ON CONFLICT(user_id, device_id) "
                    "DO UPDATE SET acked_through=max(acked_through, excluded.acked_through)",
                    (user_id, device_id, through),
                )
            return [_item(r) for r in sorted(rows)]

        return await self.db.run(fn) if server_ids else []

    async def pending(self, user_id: str, device_id: int) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                "SELECT count(*) FROM inbox WHERE user_id=? AND device_id=? AND acked=0",
                (user_id, device_id),
            ).fetchone()
            return int(count)

        return self.db.read(fn)

    async def purge_device(self, user_id: str, device_id: int) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM inbox WHERE user_id=? AND device_id=?", (user_id, device_id))
            conn.execute(
                "DELETE FROM watermarks WHERE user_id=? AND device_id=?", (user_id, device_id)
            )
            conn.execute("DELETE FROM acked WHERE user_id=? AND device_id=?", (user_id, device_id))

        await self.db.run(fn)
