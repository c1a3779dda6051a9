"""The embedded event bus: a partitioned, durable log in SQLite with consumer groups.

Same contract as the Kafka engine: records keyed to partitions, produce returns after
the commit, each group keeps committed offsets, consumption restarts after the last
commit. Partitions of a topic are split among the live members of a group in this
process (members in other processes each read every partition, so run one delivery
process per data directory).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from tidings.aio import wait_event
from tidings.core.shardmap import partition_for
from tidings.engines.embedded.sqlite import SqliteDb
from tidings.errors import NotFound
from tidings.ports import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
  key TEXT NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY (topic, part, off)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
  grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_off INTEGER NOT NULL,
  PRIMARY KEY (grp, topic, part)
) WITHOUT ROWID;
"""

_POLL_SLICE = 0.25  # re-read the log this often too, for producers in other processes


class EmbeddedBus:
    def __init__(self, path: Path) -> None:
        self.db = SqliteDb(path, SCHEMA)
        self._partitions: dict[str, int] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._members: dict[tuple[str, str], list[EmbeddedConsumer]] = {}
        self._member_ids = itertools.count(1)

    async def start(self) -> None:
        await self.db.open()

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        def fn(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT INTO topics(name, partitions) VALUES(?, ?) "
                "ON CONFLICT(name) DO UPDATE SET partitions=max(partitions, excluded.partitions)",
                (topic, partitions),
            )
            row = conn.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
            return int(row[0])

        self._partitions[topic] = await self.db.run(fn)

    async def partitions(self, topic: str) -> int:
        if topic not in self._partitions:

            def fn(conn: sqlite3.Connection) -> int | None:
                row = conn.execute(
                    "SELECT partitions FROM topics WHERE name=?", (topic,)
                ).fetchone()
                return None if row is None else int(row[0])

            found = self.db.read(fn)
            if found is None:
                raise NotFound(f"topic {topic} does not exist; create it with ensure_topic")
            self._partitions[topic] = found
        return self._partitions[topic]

    async def produce(self, topic: str, records: Sequence[tuple[str, bytes]]) -> None:
        count = await self.partitions(topic)

        def fn(conn: sqlite3.Connection) -> None:
            next_offsets: dict[int, int] = {}
            for key, value in records:
                part = partition_for(key, count)
                if part not in next_offsets:
                    row = conn.execute(
                        "SELECT max(off) FROM records WHERE topic=? AND part=?", (topic, part)
                    ).fetchone()
                    floor = conn.execute(
                        "SELECT max(next_off) FROM group_offsets WHERE topic=? AND part=?",
                        (topic, part),
                    ).fetchone()
                    last = -1 if row[0] is None else int(row[0])
                    next_offsets[part] = max(last + 1, 0 if floor[0] is None else int(floor[0]))
                conn.execute(
                    "INSERT INTO records(topic, part, off, key, value) VALUES(?,?,?,?,?)",
                    (topic, part, next_offsets[part], key, value),
                )
                next_offsets[part] += 1

        await self.db.run(fn)
        self._wakeup(topic).set()

    def _wakeup(self, topic: str) -> asyncio.Event:
        return self._wakeups.setdefault(topic, asyncio.Event())

    def consumer(self, topic: str, group: str) -> EmbeddedConsumer:
        member = EmbeddedConsumer(self, topic, group, next(self._member_ids))
        self._members.setdefault((group, topic), []).append(member)
        self._rebalance(group, topic)
        return member

    def _leave(self, member: EmbeddedConsumer) -> None:
        members = self._members.get((member.group, member.topic), [])
        if member in members:
            members.remove(member)
            self._rebalance(member.group, member.topic)

    def _rebalance(self, group: str, topic: str) -> None:
        members = self._members.get((group, topic), [])
        for index, member in enumerate(members):
            member.assign(index, len(members))

    async def ping(self) -> None:
        await self.db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self.db.close()


class EmbeddedConsumer:
    def __init__(self, bus: EmbeddedBus, topic: str, group: str, member_id: int) -> None:
        self.bus, self.topic, self.group, self.member_id = bus, topic, group, member_id
        self._slot = (0, 1)
        self._positions: dict[int, int] | None = None  # None: reload from commits
        self._generation = 0  # bumped on every rebalance

    def assign(self, index: int, members: int) -> None:
        self._slot = (index, members)
        self._positions = None
        self._generation += 1

    def _owned(self, partitions: int) -> list[int]:
        index, members = self._slot
        return [p for p in range(partitions) if p % members == index]

    async def poll(self, max_records: int, timeout: float) -> list[Record]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            wakeup = self.bus._wakeup(self.topic)
            wakeup.clear()
            records = await self._read(max_records)
            if records:
                return records
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await wait_event(wakeup, min(remaining, _POLL_SLICE))

    async def _read(self, max_records: int) -> list[Record]:
        owned = self._owned(await self.bus.partitions(self.topic))
        positions, generation = self._positions, self._generation
        topic, group = self.topic, self.group

        def fn(conn: sqlite3.Connection) -> tuple[dict[int, int], list[Record]]:
            pos = dict(positions) if positions is not None else {}
            if positions is None:
                for part in owned:
                    row = conn.execute(
                        "SELECT next_off FROM group_offsets WHERE grp=? AND topic=? AND part=?",
                        (group, topic, part),
                    ).fetchone()
                    pos[part] = 0 if row is None else int(row[0])
                    if row is None:
                        # Register the group so retention keeps what it has not committed.
                        conn.execute(
                            "INSERT INTO group_offsets(grp, topic, part, next_off) VALUES(?,?,?,0)",
                            (group, topic, part),
                        )
            out: list[Record] = []
            for part in owned:
                if len(out) >= max_records:
                    break
                rows = conn.execute(
                    "SELECT off, key, value FROM records WHERE topic=? AND part=? AND off>=? "
                    "ORDER BY off LIMIT ?",
                    (topic, part, pos[part], max_records - len(out)),
                ).fetchall()
                for off, key, value in rows:
                    out.append(Record(topic, part, int(off), str(key), bytes(value)))
                    pos[part] = int(off) + 1
            return pos, out

        # Positions known: a plain read, at once. Otherwise the writer loads (and
        # registers) the group's committed offsets first.
        db = self.bus.db
        new_positions, records = await db.run(fn) if positions is None else db.read(fn)
        if self._generation == generation:  # no rebalance happened meanwhile
            self._positions = new_positions
        return records

    async def commit(self, records: Sequence[Record]) -> None:
        upto: dict[int, int] = {}
        for record in records:
            upto[record.partition] = max(upto.get(record.partition, 0), record.offset + 1)
        topic, group = self.topic, self.group

        def fn(conn: sqlite3.Connection) -> None:
            for part, next_off in upto.items():
                conn.execute(
                    "INSERT INTO group_offsets(grp, topic, part, next_off) VALUES(?,?,?,?) "
                    "ON CONFLICT(grp, topic, part) "
                    "DO UPDATE SET next_off=max(next_off, excluded.next_off)",
                    (group, topic, part, next_off),
                )
                # Retention: drop what every group that ever committed has processed.
                conn.execute(
                    "DELETE FROM records WHERE topic=? AND part=? AND off < "
                    "(SELECT min(next_off) FROM group_offsets WHERE topic=? AND part=?)",
                    (topic, part, topic, part),
                )

        await self.bus.db.run(fn)

    async def close(self) -> None:
        self.bus._leave(self)
