"""MessageStore on Cassandra: one inbox per device, day partitions, range-deleted acks.

Tables (see ``cassandra_schema``), per device ``(user_id, device_id)``:

- ``inbox``, partition ``(user, device, day)``, rows clustered by ``(pos, server_id)``.
  ``pos`` is the envelope's timestamp (ms, ``Envelope.decode(envelope).timestamp``),
  raised to ``last + 1`` when an envelope arrives with a timestamp at or below the
  device's last position, so positions follow append order (and to a minute ago by the
  appender's clock at least). ``day = pos // 86400000``.
- ``inbox_index``: server id -> (day, pos) for every id appended within the inbox TTL,
  plus the static ``last_pos``. ``append`` reads it (one query per device) and skips
  known ids: a re-append is a no-op and an acked id never comes back. ``ack`` uses it
  to find rows.
- ``inbox_state``: the watermark (static ``wm_pos``/``wm_sid``: everything up to it is
  acked and range-deleted) and one clustering row per day that may hold unacked rows
  (the first is the oldest non-empty day).
- ``inbox_acked``: acks above the watermark (out of order, at most the in-flight window),
  skipped by ``fetch`` and range-deleted when the watermark passes them.

Acks never write one tombstone per message: when the contiguous acked prefix grows, the
rows up to the new watermark go with one range delete of its day partition, always from
the partition's start, so each delete supersedes the previous one (Cassandra merges
them: a partition holds one range tombstone however many acks moved it), plus a
partition delete for each earlier day. The deletes carry ``USING TIMESTAMP`` of the
moment the ack started reading, so a row appended meanwhile is never covered.

A row is placed at its envelope's timestamp but never earlier than a minute before the
appender's clock (``cassandra_inbox_state.position``), so rows appended lately are in the
days around the clock: fetches and acks work from a copy of the device's state kept by
this process (``InboxStates``) and read it again only every few seconds.

Cursors are ``DDDDDD.PPPPPPPPPPPPPPP.<server id>`` (day, position, server id; fixed-width
numbers, so cursors sort as positions do).

Envelopes must be decodable ``tidings.core.envelopes.Envelope`` bytes (the position comes
from their timestamp); ``append`` raises ``InvalidInput`` for anything else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tidings.aio import KeyedLocks
from tidings.core.envelopes import Envelope
from tidings.core.model import InboxItem
from tidings.engines.cassandra_inbox_state import (
    DAY_MS,
    AckWalk,
    InboxState,
    InboxStates,
    Key,
    decode_cursor,
    encode_cursor,
    position,
)
from tidings.engines.cassandra_reads import PointRead
from tidings.engines.cassandra_schema import Cql, Query, Row, Statements, gather_bounded
from tidings.errors import InvalidInput

FANOUT = 32
"""Concurrent queries of one call (devices of an append batch, rows of a device)."""
INDEX_BATCH = 50
"""Index rows per single-partition batch (well under the server's batch-size warning)."""
ROW_BATCH_BYTES = 4096
"""Envelope bytes per single-partition batch of inbox rows: under Cassandra's default
``batch_size_warn_threshold`` (5 KiB), so batching never fills the server's log."""
IN_LIMIT = 100
"""Server ids per ``IN`` lookup of the index."""


def _timestamp(user_id: str, device_id: int, server_id: str, envelope: bytes) -> int:
    try:
        return int(Envelope.decode(envelope).timestamp)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(
            f"inbox of {user_id}/{device_id}: envelope {server_id} is not an encoded Envelope "
            f"({type(exc).__name__}: {exc}); the Cassandra inbox orders by its timestamp"
        ) from exc


def _row_batches(
    put: Query, user_id: str, device_id: int, rows: list[tuple[str, int, bytes]], ttl: int
) -> list[list[tuple[Query, Sequence[Any]]]]:
    """Inserts of ``rows`` grouped per day partition, each group at most ``ROW_BATCH_BYTES``
    of envelopes (a larger envelope goes alone), in append order."""
    groups: list[list[tuple[Query, Sequence[Any]]]] = []
    day, size = -1, 0
    for sid, pos, envelope in rows:
        if pos // DAY_MS != day or size + len(envelope) > ROW_BATCH_BYTES or not groups:
            groups.append([])
            day, size = pos // DAY_MS, 0
        groups[-1].append((put, (user_id, device_id, day, pos, sid, envelope, ttl)))
        size += len(envelope)
    return groups


async def _nothing() -> list[Row]:
    return []


async def _value(copy: InboxState) -> InboxState:
    return copy


def _now_us() -> int:
    return time.time_ns() // 1000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class CassandraMessageStore:
    def __init__(
        self, cql: Cql, keyspace: str, ttl_s: int, now_ms: Callable[[], int] = _wall_ms
    ) -> None:
        if ttl_s < 1:
            raise ValueError("the inbox TTL must be at least one second")
        self.cql = cql
        self.ks = keyspace
        self.ttl_s = ttl_s
        self.q = Statements()
        self.now_ms = now_ms
        self.states = InboxStates()
        self._appending: KeyedLocks[tuple[str, int]] = KeyedLocks()
        """Appends to one device take turns in this process: a row's position is read
        then written, and two appends at once (the message and receipt consumers) could
        put a row behind what a fetch already paged past."""

    async def prepare(self) -> None:
        ks = self.ks
        device = "user_id = ? AND device_id = ?"
        statements = {
            "ping": "SELECT release_version FROM system.local",
            "inbox.put": f"INSERT INTO {ks}.inbox (user_id, device_id, day, pos, server_id, "
            "envelope) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
            "inbox.after": f"SELECT pos, server_id, envelope FROM {ks}.inbox WHERE {device} "
            "AND day = ? AND (pos, server_id) > (?, ?) LIMIT ?",
            "inbox.keys_after": f"SELECT pos, server_id FROM {ks}.inbox WHERE {device} "
            "AND day = ? AND (pos, server_id) > (?, ?)",
            "inbox.get": f"SELECT envelope FROM {ks}.inbox WHERE {device} AND day = ? "
            "AND pos = ? AND server_id = ?",
            "inbox.delete_through": f"DELETE FROM {ks}.inbox USING TIMESTAMP ? WHERE {device} "
            "AND day = ? AND (pos, server_id) <= (?, ?)",
            "inbox.delete_day": f"DELETE FROM {ks}.inbox USING TIMESTAMP ? WHERE {device} "
            "AND day = ?",
            "index.get": f"SELECT server_id, day, pos, last_pos FROM {ks}.inbox_index "
            f"WHERE {device} AND server_id IN ?",
            "index.last": f"SELECT last_pos FROM {ks}.inbox_index WHERE {device} LIMIT 1",
            "index.mark": f"INSERT INTO {ks}.inbox_index (user_id, device_id, server_id) "
            "VALUES (?, ?, '') USING TTL ?",
            "index.put": f"INSERT INTO {ks}.inbox_index (user_id, device_id, server_id, day, "
            "pos) VALUES (?, ?, ?, ?, ?) USING TTL ?",
            "index.last_put": f"UPDATE {ks}.inbox_index USING TTL ? SET last_pos = ? "
            f"WHERE {device}",
            "index.drop": f"DELETE FROM {ks}.inbox_index WHERE {device}",
            "state.get": f"SELECT day, wm_pos, wm_sid FROM {ks}.inbox_state WHERE {device}",
            "state.get_many": f"SELECT user_id, day, wm_pos, wm_sid FROM {ks}.inbox_state "
            "WHERE user_id IN ? AND device_id = ?",
            "state.day": f"INSERT INTO {ks}.inbox_state (user_id, device_id, day) "
            "VALUES (?, ?, ?) USING TTL ?",
            "state.prune": f"DELETE FROM {ks}.inbox_state USING TIMESTAMP ? WHERE {device} "
            "AND day < ?",
            "state.watermark": f"UPDATE {ks}.inbox_state USING TTL ? SET wm_pos = ?, "
            f"wm_sid = ? WHERE {device}",
            "state.drop": f"DELETE FROM {ks}.inbox_state WHERE {device}",
            "acked.list": f"SELECT pos, server_id FROM {ks}.inbox_acked WHERE {device}",
            "acked.list_many": f"SELECT user_id, pos, server_id FROM {ks}.inbox_acked "
            "WHERE user_id IN ? AND device_id = ?",
            "acked.put": f"INSERT INTO {ks}.inbox_acked (user_id, device_id, pos, server_id) "
            "VALUES (?, ?, ?, ?) USING TTL ?",
            "acked.delete_through": f"DELETE FROM {ks}.inbox_acked USING TIMESTAMP ? "
            f"WHERE {device} AND (pos, server_id) <= (?, ?)",
            "acked.drop": f"DELETE FROM {ks}.inbox_acked WHERE {device}",
        }
        prepared = await asyncio.gather(
            *(self.cql.prepare(name, cql) for name, cql in statements.items())
        )
        self.q = Statements({query.name: query for query in prepared})

    async def ping(self) -> None:
        await self.cql.run(self.q["ping"])

    async def _locate(self, user_id: str, device_id: int, server_ids: list[str]) -> list[Row]:
        """Index rows (server_id, day, pos, and the static last_pos) of those ``server_ids``
        appended to the inbox (the mark row, id ``""``, when asked for)."""
        chunks = [server_ids[i : i + IN_LIMIT] for i in range(0, len(server_ids), IN_LIMIT)]
        found = await asyncio.gather(
            *(self.cql.run(self.q["index.get"], (user_id, device_id, c)) for c in chunks)
        )
        return [row for rows in found for row in rows]

    async def _seen(
        self, user_id: str, device_id: int, server_ids: list[str]
    ) -> tuple[dict[str, int], int]:
        """Which of ``server_ids`` the inbox has (id -> position), and its last position.

        The index partition's static ``last_pos`` comes back with every row a query
        returns, so the first lookup also asks for the mark row (server id ``''``, written
        with every append): one statement where a lookup and a read of ``last_pos`` were
        two. Only an index without the mark (no append yet, or one by an older version)
        costs the second."""
        rows = await self._locate(user_id, device_id, ["", *server_ids])
        if rows:
            last = rows[0].get("last_pos")
        else:
            last = ((await self.cql.one(self.q["index.last"], (user_id, device_id))) or {}).get(
                "last_pos"
            )
        seen = {str(r["server_id"]): int(r["pos"]) for r in rows if r["server_id"]}
        return seen, int(last or 0)

    async def _read(self, user_id: str, device_id: int) -> InboxState:
        """The device's inbox state as stored now (kept as this process's copy)."""
        read_at = self.now_ms()
        q = self.q  # sockets connecting at once read their states in one request each
        state, acked = await asyncio.gather(
            self.cql.read_shared(
                PointRead(q["state.get"], q["state.get_many"], "user_id"), user_id, (device_id,)
            ),
            self.cql.read_shared(
                PointRead(q["acked.list"], q["acked.list_many"], "user_id"), user_id, (device_id,)
            ),
        )
        inbox = InboxState(state, acked, read_at)
        self.states.keep((user_id, device_id), inbox)
        return inbox

    async def _state(self, user_id: str, device_id: int) -> InboxState:
        """This process's copy of the device's inbox state, read again when stale."""
        copy = self.states.fresh((user_id, device_id), self.now_ms())
        return copy if copy is not None else await self._read(user_id, device_id)

    # append ------------------------------------------------------------------------
    async def append(self, items: Sequence[tuple[str, int, str, bytes]]) -> int:
        inboxes: dict[tuple[str, int], dict[str, tuple[int, bytes]]] = {}
        for user_id, device_id, server_id, envelope in items:
            rows = inboxes.setdefault((user_id, device_id), {})
            if server_id not in rows:  # the first copy wins, as on replays
                ts = _timestamp(user_id, device_id, server_id, envelope)
                rows[server_id] = (ts, envelope)
        added = await gather_bounded(
            FANOUT,
            *(self._append_alone(uid, did, rows) for (uid, did), rows in inboxes.items()),
        )
        return sum(added)

    async def _append_alone(
        self, user_id: str, device_id: int, rows: dict[str, tuple[int, bytes]]
    ) -> int:
        async with self._appending((user_id, device_id)):
            return await self._append(user_id, device_id, rows)

    async def _append(
        self, user_id: str, device_id: int, rows: dict[str, tuple[int, bytes]]
    ) -> int:
        q, cql, ttl = self.q, self.cql, self.ttl_s
        seen, last = await self._seen(user_id, device_id, list(rows))
        previous = max([last, *seen.values()])
        now = self.now_ms()
        new: list[tuple[str, int, bytes]] = []
        for server_id, (ts, envelope) in rows.items():
            if server_id in seen:
                continue
            previous = position(ts, previous, now)
            new.append((server_id, previous, envelope))
        if not new:
            return 0
        # 1. the rows; 2. only then their days, the index and the last position (a crash
        # before 2 leaves ids unindexed, so the replay rewrites the same rows and days).
        # Rows go in single-partition batches (a few rows of a day each, applied
        # atomically, sharing a request with other devices' writes at most), one after
        # another in position order: a fetch
        # running meanwhile never sees a later row without every earlier one, so its
        # cursor cannot pass a row that is still on its way.
        days = sorted({pos // DAY_MS for _, pos, _ in new})
        for part in _row_batches(q["inbox.put"], user_id, device_id, new, ttl):
            await cql.write_shared("inbox: rows", part)
        index: list[tuple[Query, Sequence[Any]]] = [
            (q["state.day"], (user_id, device_id, day, ttl)) for day in days
        ]
        index += [
            (q["index.put"], (user_id, device_id, sid, pos // DAY_MS, pos, ttl))
            for sid, pos, _ in new
        ]
        chunks = [index[i : i + INDEX_BATCH] for i in range(0, len(index), INDEX_BATCH)]
        chunks[-1] += [
            (q["index.last_put"], (ttl, previous, user_id, device_id)),
            (q["index.mark"], (user_id, device_id, ttl)),
        ]
        for chunk in chunks:  # in order: the last position goes with the last ids
            await cql.write_shared("inbox: index", chunk)
        return len(new)

    # fetch -------------------------------------------------------------------------
    async def fetch(
        self, user_id: str, device_id: int, after: str | None, limit: int
    ) -> list[InboxItem]:
        if limit <= 0:
            return []
        inbox = await self._state(user_id, device_id)
        start = inbox.floor if after is None else max(inbox.floor, decode_cursor(after))
        out: list[InboxItem] = []
        for day in inbox.days_from(start, self.now_ms()):
            want = limit - len(out) + len(inbox.acked)  # acked rows are skipped
            rows = await self.cql.run(
                self.q["inbox.after"], (user_id, device_id, day, *start, want)
            )
            if rows:
                inbox.saw(day)
            for row in rows:
                key = (int(row["pos"]), str(row["server_id"]))
                if key in inbox.acked:
                    continue
                out.append(InboxItem(encode_cursor(key), key[1], bytes(row["envelope"])))
                if len(out) == limit:
                    return out
        return out

    # ack ---------------------------------------------------------------------------
    async def ack(
        self,
        user_id: str,
        device_id: int,
        server_ids: Sequence[str],
        cursors: Mapping[str, str] | None = None,
    ) -> list[InboxItem]:
        wanted = list(dict.fromkeys(server_ids))
        if not wanted:
            return []
        started = _now_us()  # the deletes below shadow only what existed by now
        # A cursor names the row itself: no index read, and no miss for a row fetched
        # before the appending worker wrote its index entry.
        known = [decode_cursor(cursors[sid]) for sid in wanted if cursors and sid in cursors]
        unknown = [sid for sid in wanted if not cursors or sid not in cursors]
        copy = self.states.fresh((user_id, device_id), self.now_ms())
        inbox, located = await asyncio.gather(
            self._read(user_id, device_id) if copy is None else _value(copy),
            self._locate(user_id, device_id, unknown) if unknown else _nothing(),
        )
        keys = [*known, *((int(r["pos"]), str(r["server_id"])) for r in located)]
        walk = await self._walk(user_id, device_id, inbox, keys)
        if walk.crosses_days and copy is not None:
            # Into a later day: a day this copy does not list could lie between (a row
            # there would be passed unacked), so decide again on the state as stored.
            inbox = await self._read(user_id, device_id)
            walk = await self._walk(user_id, device_id, inbox, keys)
        return await self._record(user_id, device_id, inbox, walk, started)

    async def _walk(
        self, user_id: str, device_id: int, inbox: InboxState, keys: list[Key]
    ) -> AckWalk:
        """Where acking ``keys`` moves the watermark, and the acked rows read on the way.

        Walks from the watermark: the acked prefix ends at the first row not acked. Every
        row before it is acked, so the walk reads at most len(acked) + 1 rows."""
        q, cql = self.q, self.cql
        walk = AckWalk(
            inbox, {k: k[0] // DAY_MS for k in keys if k > inbox.floor and k not in inbox.acked}
        )
        if not walk.targets:
            return walk
        acked = inbox.acked | walk.targets.keys()
        budget = len(acked) + 1
        for day in inbox.days_from(inbox.floor, self.now_ms()):
            rows = await cql.run(q["inbox.after"], (user_id, device_id, day, *inbox.floor, budget))
            budget -= len(rows)
            for row in rows:
                key = (int(row["pos"]), str(row["server_id"]))
                if key in walk.targets:
                    walk.found[key] = bytes(row["envelope"])
                if key not in acked:
                    walk.stopped_on = day
                    break
                walk.watermark = key
            if walk.stopped_on is not None or budget <= 0:
                break
        return walk

    async def _record(
        self, user_id: str, device_id: int, inbox: InboxState, walk: AckWalk, started: int
    ) -> list[InboxItem]:
        """Write what ``walk`` decided and keep this process's copy in step with it."""
        q, cql = self.q, self.cql
        targets, found, watermark = walk.targets, walk.found, walk.watermark
        beyond = [key for key in targets if key not in found]  # past the first unacked row
        envelopes = await asyncio.gather(
            *(cql.one(q["inbox.get"], (user_id, device_id, targets[k], *k)) for k in beyond)
        )
        found.update({k: bytes(r["envelope"]) for k, r in zip(beyond, envelopes, strict=True) if r})
        if not found:  # indexed, but the rows are gone (expired)
            return []

        ttl = self.ttl_s
        writes: list[tuple[Query, Sequence[Any]]] = [
            (q["acked.put"], (user_id, device_id, *key, ttl))
            for key in found
            if watermark is None or key > watermark
        ]
        keep_from: int | None = None
        if watermark is not None and watermark != inbox.watermark:
            day = watermark[0] // DAY_MS
            writes += [
                (q["inbox.delete_day"], (started, user_id, device_id, d))
                for d in sorted(inbox.days)
                if d < day
            ]
            writes += [
                (q["inbox.delete_through"], (started, user_id, device_id, day, *watermark)),
                (q["state.watermark"], (ttl, *watermark, user_id, device_id)),
            ]
            if any(key <= watermark for key in inbox.acked):  # out-of-order acks it passed
                writes.append(
                    (q["acked.delete_through"], (started, user_id, device_id, *watermark))
                )
            keep_from = day if walk.stopped_on is None else walk.stopped_on
            if any(d < keep_from for d in inbox.days):  # days now without unacked rows
                writes.append((q["state.prune"], (started, user_id, device_id, keep_from)))
        # One unlogged batch: every write is to this device's partition of its table, so
        # each table's part applies atomically; it may share its request with other
        # devices' acks (``Cql.write_shared``).
        if writes:
            await cql.write_shared("inbox: ack", writes)
        device = (user_id, device_id)
        if self.states.current(device, inbox):
            inbox.acked_now(set(found), watermark, keep_from)
        else:  # read again meanwhile, perhaps before these writes: read once more next time
            self.states.forget(device)
        return [InboxItem(encode_cursor(k), k[1], found[k]) for k in sorted(found)]

    # pending, purge ----------------------------------------------------------------
    async def pending(self, user_id: str, device_id: int) -> int:
        inbox = await self._read(user_id, device_id)
        per_day = await asyncio.gather(
            *(
                self.cql.run(self.q["inbox.keys_after"], (user_id, device_id, day, *inbox.floor))
                for day in inbox.days_from(inbox.floor, self.now_ms())
            )
        )
        return sum(
            (int(r["pos"]), str(r["server_id"])) not in inbox.acked
            for rows in per_day
            for r in rows
        )

    async def purge_device(self, user_id: str, device_id: int) -> None:
        q, cql = self.q, self.cql
        inbox = await self._read(user_id, device_id)
        self.states.forget((user_id, device_id))
        now = _now_us()
        await asyncio.gather(
            *(cql.run(q["inbox.delete_day"], (now, user_id, device_id, d)) for d in inbox.days),
            cql.run(q["index.drop"], (user_id, device_id)),
            cql.run(q["acked.drop"], (user_id, device_id)),
            cql.run(q["state.drop"], (user_id, device_id)),
        )
