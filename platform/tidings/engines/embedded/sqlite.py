"""One SQLite connection with group commit on a writer thread of its own.

Calls queue up; the writer thread runs everything queued as one ``BEGIN IMMEDIATE``
transaction. Each call still runs as its own unit (a ``SAVEPOINT``: a call that raises
undoes only its own changes), but the commit, the costly part even without fsync (the
WAL frames and the lock), is paid once per batch instead of once per call. While one
batch commits, the next one collects: under load every socket's acks, fetches and
appends of that time go together. A caller hears its result only after the commit, so
"returned" still means "durable".

Why a thread: SQLite runs without the GIL, so on a machine with a second core the
statements and the commit run beside the event loop instead of stalling it (they were
a fifth of the embedded server's CPU, all of it on the loop). One thread per database
keeps its transactions from interleaving; ``busy_timeout`` covers other processes
sharing the data directory. The calls must touch only the connection and their own
arguments: they run on the writer thread.

Reads that need no transaction (``read``) run at once on the event loop, on a second,
read-only connection: in WAL mode a reader sees the last commit and never waits for the
writer. A read through the writer would cost a queue wait, a thread hand-off each way
(each one a wait for the GIL while the loop is busy) and two loop turns; a short
indexed lookup costs microseconds. The message path's inbox fetch, the bus poll and the
connect path's session and device lookups each cross the writer once less.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tidings.errors import Unavailable

T = TypeVar("T")

_Fn = Callable[[sqlite3.Connection], Any]
_Call = tuple[_Fn, "asyncio.Future[Any]"]
_Outcome = tuple[BaseException | None, Any]


class SqliteDb:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._pending: list[_Call] = []
        self._start_scheduled = False
        self._committing: asyncio.Future[list[_Outcome]] | None = None
        self._writer: ThreadPoolExecutor | None = None

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
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only=ON")
        reader.execute("PRAGMA busy_timeout=5000")
        self._reader = reader
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-{self.path.stem}")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one unit of the next batch's transaction; returns after the commit."""
        if self._conn is None:
            raise Unavailable(f"database {self.path.name} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, future))
        if self._committing is None and not self._start_scheduled:
            # Not at once: the other calls of this event-loop turn join the batch.
            self._start_scheduled = True
            loop.call_soon(self._start)
        return await future

    def read(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        """Run ``fn`` now, on the read-only connection: it sees the last commit (not the
        calls still queued for the writer). Only for short indexed reads. ``snapshot``:
        ``fn`` makes several statements that must all see the same commit."""
        reader = self._reader
        if reader is None:
            raise Unavailable(f"database {self.path.name} is not open")
        try:
            if not snapshot:
                return fn(reader)
            reader.execute("BEGIN")
            try:
                return fn(reader)
            finally:
                reader.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"database {self.path.name}: {exc}; retry shortly") from exc

    def _start(self) -> None:
        self._start_scheduled = False
        if self._committing is not None:
            return  # the batch under way starts the next one when it ends
        calls = [(fn, future) for fn, future in self._pending if not future.cancelled()]
        self._pending = []
        if not calls:
            return
        conn, writer = self._conn, self._writer
        if conn is None or writer is None:
            _fail(calls, Unavailable(f"database {self.path.name} is not open"))
            return
        loop = asyncio.get_running_loop()
        committing = loop.run_in_executor(writer, self._transaction, conn, [f for f, _ in calls])
        self._committing = committing
        committing.add_done_callback(lambda done: self._answer(calls, done))

    def _answer(self, calls: list[_Call], done: asyncio.Future[list[_Outcome]]) -> None:
        self._committing = None
        error = done.exception()
        if error is not None:
            failure = (
                error
                if isinstance(error, Unavailable)
                else Unavailable(f"database {self.path.name}: batch interrupted ({error!r})")
            )
            _fail(calls, failure)
        else:
            for (_, future), (failed, result) in zip(calls, done.result(), strict=True):
                if future.done():
                    continue
                if failed is None:
                    future.set_result(result)
                else:
                    future.set_exception(failed)
        if self._pending:
            self._start()

    def _transaction(self, conn: sqlite3.Connection, fns: Sequence[_Fn]) -> list[_Outcome]:
        """On the writer thread: every call in one transaction, each in its savepoint."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = [self._unit(conn, fn) for fn in fns]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise Unavailable(f"database {self.path.name}: {exc}; retry shortly") from exc
        return outcomes

    def _unit(self, conn: sqlite3.Connection, fn: _Fn) -> _Outcome:
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
        """Let the batch under way and the calls queued behind it finish, then close."""
        while self._committing is not None or self._pending:
            if self._committing is not None:
                await asyncio.wait([self._committing])
                await asyncio.sleep(0)  # its answers, and the next batch's start
            elif not self._start_scheduled:
                self._start()
            else:
                await asyncio.sleep(0)
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _fail(calls: list[_Call], error: Unavailable) -> None:
    for _, future in calls:
        if not future.done():
            future.set_exception(error)
