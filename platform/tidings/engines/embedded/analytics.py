"""AnalyticsStore on SQLite: one row per (day, counter)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from tidings.engines.embedded.sqlite import SqliteDb

SCHEMA = """
CREATE TABLE IF NOT EXISTS daily (
  day TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
  PRIMARY KEY (day, name)
) WITHOUT ROWID;
"""


class SqliteAnalyticsStore:
    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    @classmethod
    def at(cls, path: Path) -> SqliteAnalyticsStore:
        return cls(SqliteDb(path, SCHEMA))

    async def start(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def add(self, counts: Mapping[tuple[str, str], int]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO daily (day, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value",
                [(day, name, value) for (day, name), value in counts.items()],
            )

        await self.db.run(write)

    async def day(self, day: str) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT name, value FROM daily WHERE day = ?", (day,))
            return {str(name): int(value) for name, value in rows}

        return await self.db.run(read)

    async def ping(self) -> None:
        await self.db.run(lambda conn: conn.execute("SELECT 1").fetchone())
