"""What the Cassandra inbox costs per message in statements, and what keeps the cheap
way correct across processes (two engines on the real Cassandra stand for a gateway and
a delivery worker, or two gateways)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from cassandra_support import counted, engine_on
from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.model import AuthSession
from tidings.engines.cassandra import CassandraConfig
from tidings.engines.cassandra_inbox_state import DAY_MS, REFRESH_MS

STATE_READS = ("state.get", "acked.list")


def envelope(server_id: str, timestamp: int, user: str) -> bytes:
    return Envelope(server_id, EnvelopeKind.MESSAGE, timestamp, "sender", 1, user, 1).encode()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_a_socket_reads_the_inbox_state_once_not_per_fetch_and_ack(
    cassandra_config: CassandraConfig,
) -> None:
    """A device receiving 20 messages one by one, each appended by the delivery worker
    (another engine), fetched and acked by the gateway: the gateway reads the state
    once, then again before its first watermark (it moves into a day), and for the rest
    one statement per fetch and two per ack."""
    user = f"{uuid.uuid4().hex[:12]}-bob"
    async with engine_on(cassandra_config) as worker, engine_on(cassandra_config) as gateway:
        issued = counted(gateway.messages)
        delivered: list[str] = []
        for i in range(20):
            sid = f"m{i:02d}"
            assert await worker.messages.append([(user, 1, sid, envelope(sid, now_ms(), user))])
            (item,) = await gateway.messages.fetch(user, 1, None, 10)
            (acked,) = await gateway.messages.ack(user, 1, [item.server_id], {sid: item.cursor})
            delivered.append(acked.server_id)
        assert delivered == [f"m{i:02d}" for i in range(20)]
        assert await gateway.messages.fetch(user, 1, None, 10) == []
        assert {name: issued[name] for name in STATE_READS} == {"state.get": 2, "acked.list": 2}
        # Each fetch, each ack's walk (the first one twice: before and after reading
        # again), and the last fetch.
        assert issued["inbox.after"] == 20 + 20 + 1 + 1


async def test_an_append_is_three_statements_and_still_skips_known_ids(
    cassandra_config: CassandraConfig,
) -> None:
    """The known ids and the last position in one read (the mark row brings the static
    ``last_pos`` along), then the row, then the index: three statements; the first
    append of a device reads ``last_pos`` apart (no mark yet). A replay adds nothing."""
    user = f"{uuid.uuid4().hex[:12]}-bob"
    async with engine_on(cassandra_config) as worker:
        issued = counted(worker.messages)
        first = [(user, 1, "a", envelope("a", now_ms(), user))]
        assert await worker.messages.append(first) == 1
        index_batch = {"state.day": 1, "index.put": 1, "index.last_put": 1, "index.mark": 1}
        assert dict(issued) == {"index.get": 1, "index.last": 1, "inbox.put": 1, **index_batch}
        issued.clear()
        second = [(user, 1, "b", envelope("b", now_ms(), user))]
        assert await worker.messages.append(second) == 1
        assert dict(issued) == {"index.get": 1, "inbox.put": 1, **index_batch}
        issued.clear()
        assert await worker.messages.append([*first, *second]) == 0  # a replay
        assert dict(issued) == {"index.get": 1}
        late = [(user, 1, "c", envelope("c", now_ms() - 5000, user))]
        assert await worker.messages.append(late) == 1
        assert [i.server_id for i in await worker.messages.fetch(user, 1, None, 9)] == list("abc")


async def test_an_ack_never_passes_a_row_in_a_day_its_copy_does_not_list(
    cassandra_config: CassandraConfig,
) -> None:
    """A worker whose clock is two days behind (far beyond the skew allowed) appends a row
    in a day the gateway's copy does not list; the gateway does not see it, and acks a
    later row: the watermark must not pass the unseen row (it would be lost). Before the
    watermark moves into a day, the ack reads the state as stored."""
    user = f"{uuid.uuid4().hex[:12]}-bob"
    behind = now_ms() - 2 * DAY_MS
    async with engine_on(cassandra_config) as worker, engine_on(cassandra_config) as gateway:
        assert await gateway.messages.fetch(user, 1, None, 10) == []  # the copy: no days
        store: Any = worker.messages
        store.now_ms = lambda: behind
        assert await worker.messages.append([(user, 1, "old", envelope("old", behind, user))])
        store.now_ms = now_ms
        assert await worker.messages.append([(user, 1, "new", envelope("new", now_ms(), user))])

        (seen,) = await gateway.messages.fetch(user, 1, None, 10)
        assert seen.server_id == "new"  # the old row's day is not one the copy reads
        assert [i.server_id for i in await gateway.messages.ack(user, 1, ["new"])] == ["new"]
        # The ack read the state again, found the old day, and stopped before it.
        assert [i.server_id for i in await gateway.messages.fetch(user, 1, None, 10)] == ["old"]
        assert await gateway.messages.pending(user, 1) == 1
        assert [i.server_id for i in await gateway.messages.ack(user, 1, ["old"])] == ["old"]
        assert await gateway.messages.pending(user, 1) == 0


async def test_acks_through_another_gateway_are_seen_once_the_copy_is_stale(
    cassandra_config: CassandraConfig,
) -> None:
    """The device moved to another gateway and acked there: this gateway's copy is
    behind until ``REFRESH_MS`` has passed (it may deliver those rows again, which
    clients drop by server id), and then reads the state again."""
    user = f"{uuid.uuid4().hex[:12]}-bob"
    async with engine_on(cassandra_config) as here, engine_on(cassandra_config) as there:
        start = now_ms()
        rows = [(user, 1, s, envelope(s, start + i, user)) for i, s in enumerate("abc")]
        assert await here.messages.append(rows) == 3
        store: Any = here.messages
        clock = [start]
        store.now_ms = lambda: clock[0]
        assert [i.server_id for i in await here.messages.fetch(user, 1, None, 10)] == list("abc")
        assert len(await there.messages.ack(user, 1, ["a", "c"])) == 2

        clock[0] = start + REFRESH_MS
        assert [i.server_id for i in await here.messages.fetch(user, 1, None, 10)] == ["b"]
        assert [i.server_id for i in await here.messages.ack(user, 1, ["b"])] == ["b"]
        assert await there.messages.fetch(user, 1, None, 10) == []


async def test_acks_and_appends_of_many_devices_share_requests(
    cassandra_config: CassandraConfig,
) -> None:
    """Ten devices' appends (one call), then their acks at once: the writes leave in a
    few requests, not one or two per device, and every one of them is applied."""
    user = f"{uuid.uuid4().hex[:12]}-bob"
    devices = range(1, 11)
    async with engine_on(cassandra_config) as engine:
        cql: Any = engine.messages.cql  # type: ignore[attr-defined]
        requests: list[list[str]] = []
        send = cql._send_shared

        async def recorded(writes: Any) -> None:
            requests.append([w.name for w in writes])
            await send(writes)

        cql._send_shared = recorded
        rows = [(user, d, f"m{d}", envelope(f"m{d}", now_ms(), user)) for d in devices]
        assert await engine.messages.append(rows) == 10
        appended = len(requests)
        items = {d: await engine.messages.fetch(user, d, None, 5) for d in devices}
        assert all([i.server_id for i in items[d]] == [f"m{d}"] for d in devices)
        acked = await asyncio.gather(
            *(
                engine.messages.ack(user, d, [f"m{d}"], {f"m{d}": items[d][0].cursor})
                for d in devices
            )
        )
        assert [[i.server_id for i in a] for a in acked] == [[f"m{d}"] for d in devices]
        assert all([await engine.messages.fetch(user, d, None, 5) == [] for d in devices])
        # 10 devices: 10 row writes and 10 index writes, then 10 ack writes, each pack
        # of at most 10 partitions (a device's writes touch one or two).
        ack_requests = requests[appended:]
        assert sum(len(r) for r in requests) == 30
        assert appended < 20, requests
        assert len(ack_requests) < 10, requests


async def test_sockets_connecting_at_once_share_their_state_and_session_reads(
    cassandra_config: CassandraConfig,
) -> None:
    """Twenty devices (two device ids) connect at one moment: their sessions, inbox
    states and out-of-order acks are read in a few IN requests, each device gets its
    own (what one device acked out of order stays its own), and a lone reader keeps
    the single-partition statement."""
    users = [f"{uuid.uuid4().hex[:12]}-u{i}" for i in range(10)]
    async with engine_on(cassandra_config) as worker, engine_on(cassandra_config) as gateway:
        now = now_ms()
        rows = [
            (u, d, f"m{d}{k}", envelope(f"m{d}{k}", now + k, u))
            for u in users
            for d in (1, 2)
            for k in (1, 2)
        ]
        assert await worker.messages.append(rows) == 40
        # users[0]'s device 2 acks its second message only (out of order)
        (_, second) = await worker.messages.fetch(users[0], 2, None, 5)
        await worker.messages.ack(
            users[0], 2, [second.server_id], {second.server_id: second.cursor}
        )
        for user in users:
            await worker.users.put_session(
                AuthSession(f"t-{user}", "access", user, 1, now / 1000 + 60)
            )
        issued = counted(gateway.messages)
        sessions_issued = counted(gateway.users)
        sessions = await asyncio.gather(*(gateway.users.get_session(f"t-{u}") for u in users))
        assert [s.user_id for s in sessions if s is not None] == users
        assert await gateway.users.get_session("t-nobody") is None
        fetched = await asyncio.gather(
            *(gateway.messages.fetch(u, d, None, 5) for u in users for d in (1, 2))
        )
        expected = [
            [f"m{d}1"] if (u, d) == (users[0], 2) else [f"m{d}1", f"m{d}2"]
            for u in users
            for d in (1, 2)
        ]
        assert [[i.server_id for i in items] for items in fetched] == expected
        assert sessions_issued["session.get_many"] == 1
        assert sessions_issued["session.get"] == 1  # the lone lookup
        # per device id: one IN request for the states, one for the acks
        assert {name: issued[name] for name in ("state.get_many", "acked.list_many")} == {
            "state.get_many": 2,
            "acked.list_many": 2,
        }
        assert issued["state.get"] == issued["acked.list"] == 0
