"""One SQLite connection, each store method one ``BEGIN IMMEDIATE`` transaction.

Transactions run inline on the event loop: a WAL commit without fsync takes tens of
microseconds, far less than handing each one to a worker thread (measured with
``bench/message_path.py``: 226 -> 391 msg/s). Running inline also means transactions
never interleave within a process; ``busy_timeout`` covers other processes sharing
the data directory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tidings.errors import Unavailable

T = TypeVar("T")


class SqliteDb:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (not a power cut); FULL costs an
        # fsync per commit.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(self._schema)
        self._conn = conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction."""
        conn = self._conn
        if conn is None:
            raise Unavailable(f"database {self.path.name} is not open")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"database {self.path.name}: {exc}; retry shortly") from exc

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
