"""The ``ShardLeases`` port on SQLite: each write one conditional statement in its own
transaction (one process, or several on one file, agree through SQLite's locks)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tidings.core.leases import LeaseOp, LeaseRow, OpKind
from tidings.engines.embedded.sqlite import SqliteDb

SCHEMA = """
CREATE TABLE IF NOT EXISTS shard_leases (
  shard TEXT PRIMARY KEY, owner TEXT NOT NULL, epoch INTEGER NOT NULL,
  until_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SqliteShardLeases:
    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    @classmethod
    def at(cls, path: Path) -> SqliteShardLeases:
        return cls(SqliteDb(path, SCHEMA))

    async def start(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def read(self, shard: str) -> LeaseRow | None:
        return await self.db.run(lambda conn: _read(conn, shard))

    async def write(self, op: LeaseOp) -> tuple[bool, LeaseRow | None]:
        def apply(conn: sqlite3.Connection) -> tuple[bool, LeaseRow | None]:
            if op.kind is OpKind.CREATE:
                cursor = conn.execute(
                    "INSERT INTO shard_leases (shard, owner, epoch, until_ms) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (shard) DO NOTHING",
                    (op.shard, op.owner, op.epoch, op.until_ms),
                )
            elif op.kind is OpKind.TAKE:
                cursor = conn.execute(
                    "UPDATE shard_leases SET owner = ?, epoch = ?, until_ms = ? "
                    "WHERE shard = ? AND epoch = ? AND until_ms < ?",
                    (
                        op.owner,
                        op.epoch,
                        op.until_ms,
                        op.shard,
                        op.expected_epoch,
                        op.lapsed_before_ms,
                    ),
                )
            else:
                cursor = conn.execute(
                    "UPDATE shard_leases SET until_ms = ? "
                    "WHERE shard = ? AND owner = ? AND epoch = ?",
                    (op.until_ms, op.shard, op.owner, op.expected_epoch),
                )
            return cursor.rowcount == 1, _read(conn, op.shard)

        return await self.db.run(apply)


def _read(conn: sqlite3.Connection, shard: str) -> LeaseRow | None:
    row = conn.execute(
        "SELECT shard, owner, epoch, until_ms FROM shard_leases WHERE shard = ?", (shard,)
    ).fetchone()
    return None if row is None else LeaseRow(str(row[0]), str(row[1]), int(row[2]), int(row[3]))
