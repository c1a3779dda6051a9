"""One SQLite connection with group commit: the store calls of one event-loop turn share
one ``BEGIN IMMEDIATE`` transaction.

Each call still runs as its own unit (a ``SAVEPOINT``: a call that raises undoes only its
own changes), but the commit, the costly part even without fsync (the WAL frames and the
lock), is paid once per turn instead of once per call: under load every socket's acks,
fetches and appends of a turn go together. A caller hears its result only after the
commit, so "returned" still means "durable". Transactions run inline on the event loop (a
worker thread costs more than a WAL commit), so they never interleave within a process;
``busy_timeout`` covers other processes sharing the data directory.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tidings.errors import Unavailable

T = TypeVar("T")

_Call = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


class SqliteDb:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._conn: sqlite3.Connection | None = None
        self._pending: list[_Call] = []
        self._flush_scheduled = False

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
        """Run ``fn`` as one unit of the current turn's transaction; returns after the commit."""
        if self._conn is None:
            raise Unavailable(f"database {self.path.name} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        calls = [(fn, future) for fn, future in batch if not future.cancelled()]
        conn = self._conn
        if not calls:
            return
        if conn is None:
            _fail(calls, Unavailable(f"database {self.path.name} is not open"))
            return
        outcomes: list[tuple[asyncio.Future[Any], BaseException | None, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for fn, future in calls:
                    outcomes.append((future, *self._unit(conn, fn)))
            except BaseException:
                conn.execute("ROLLBACK")
                _fail(calls, Unavailable(f"database {self.path.name}: batch interrupted"))
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            _fail(calls, Unavailable(f"database {self.path.name}: {exc}; retry shortly"))
            return
        for future, error, result in outcomes:
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def _unit(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
    ) -> tuple[BaseException | None, Any]:
        """Run one call inside a savepoint; its failure undoes its own changes only."""
        conn.execute("SAVEPOINT unit")
        try:
            result = fn(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            if isinstance(exc, sqlite3.OperationalError):
                error: BaseException = Unavailable(
                    f"database {self.path.name}: {exc}; retry shortly"
                )
                error.__cause__ = exc
                return error, None
            return exc, None
        conn.execute("RELEASE unit")
        return None, result

    async def close(self) -> None:
        if self._pending:
            self._flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _fail(calls: list[_Call], error: Unavailable) -> None:
    for _, future in calls:
        if not future.done():
            future.set_exception(error)
