"""SqliteDb group commit: the calls queued together share one transaction, each
still its own unit, and a caller hears back only after the commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tidings.engines.embedded.sqlite import SqliteDb
from tidings.errors import Unavailable

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"


@pytest.fixture
async def db(tmp_path: Path) -> SqliteDb:
    db = SqliteDb(tmp_path / "t.db", SCHEMA)
    await db.open()
    return db


def _insert(key: str, value: int) -> Callable[[sqlite3.Connection], int]:
    def fn(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (?, ?)", (key, value))
        return value

    return fn


def _committed(path: Path) -> dict[str, int]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(path) as other:
        return dict(other.execute("SELECT k, v FROM t").fetchall())


async def test_calls_of_one_turn_share_one_commit_and_answer_in_order(
    db: SqliteDb, tmp_path: Path
) -> None:
    statements: list[str] = []
    assert db._conn is not None
    db._conn.set_trace_callback(statements.append)
    results = await asyncio.gather(*(db.run(_insert(f"k{i}", i)) for i in range(20)))
    assert results == list(range(20))
    assert statements.count("COMMIT") == 1
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert _committed(tmp_path / "t.db") == {f"k{i}": i for i in range(20)}


async def test_a_failing_call_undoes_only_its_own_changes(db: SqliteDb, tmp_path: Path) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('b', 2)")
        raise ValueError("refused")

    first, failed, last = await asyncio.gather(
        db.run(_insert("a", 1)),
        db.run(half_then_fail),
        db.run(_insert("c", 3)),
        return_exceptions=True,
    )
    assert (first, last) == (1, 3)
    assert isinstance(failed, ValueError)
    assert _committed(tmp_path / "t.db") == {"a": 1, "c": 3}


async def test_each_call_sees_the_calls_before_it_in_its_turn(db: SqliteDb) -> None:
    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    _, seen = await asyncio.gather(db.run(_insert("a", 1)), db.run(count))
    assert seen == 1


async def test_a_database_error_is_unavailable_for_that_caller_only(db: SqliteDb) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT * FROM no_such_table")

    ok, bad = await asyncio.gather(
        db.run(_insert("a", 1)),
        db.run(broken),
        return_exceptions=True,
    )
    assert ok == 1
    assert isinstance(bad, Unavailable)
    assert "no_such_table" in bad.message


async def test_a_closed_database_refuses_calls(db: SqliteDb) -> None:
    await db.close()
    with pytest.raises(Unavailable, match="not open"):
        await db.run(_insert("a", 1))


async def test_calls_of_later_turns_go_in_a_batch_of_their_own(db: SqliteDb) -> None:
    statements: list[str] = []
    assert db._conn is not None
    db._conn.set_trace_callback(statements.append)
    assert await db.run(_insert("a", 1)) == 1
    assert await asyncio.gather(*(db.run(_insert(f"k{i}", i)) for i in range(10))) == list(
        range(10)
    )
    assert statements.count("BEGIN IMMEDIATE") == 2
    assert statements.count("COMMIT") == 2


async def test_a_read_sees_the_last_commit_not_the_calls_still_queued(db: SqliteDb) -> None:
    def keys(conn: sqlite3.Connection) -> list[str]:
        return [str(k) for (k,) in conn.execute("SELECT k FROM t ORDER BY k")]

    await db.run(_insert("a", 1))
    queued = asyncio.ensure_future(db.run(_insert("b", 2)))
    await asyncio.sleep(0)  # queued for the next turn's batch, not committed yet
    assert not queued.done()
    assert db.read(keys) == ["a"]
    assert await queued == 2
    assert db.read(keys) == ["a", "b"]
    assert db.read(keys, snapshot=True) == ["a", "b"]


async def test_close_commits_the_calls_still_queued(db: SqliteDb, tmp_path: Path) -> None:
    calls = [asyncio.ensure_future(db.run(_insert(f"k{i}", i))) for i in range(5)]
    await asyncio.sleep(0)  # each call queued; the batch would run on the next turn
    await db.close()
    assert await asyncio.gather(*calls) == list(range(5))
    assert _committed(tmp_path / "t.db") == {f"k{i}": i for i in range(5)}
