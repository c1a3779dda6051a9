"""The Cassandra engine beyond the port contract: migrations, range deletes, races, errors.

Runs against the real node of ``scripts/deps`` (session fixture ``cassandra_env``).
Migration tests use fresh keyspaces (dropped after); the others use the contract
keyspace with per-test ids, like ``tests/integration/ports``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import SimpleStatement, dict_factory

from cassandra_support import counted, engine_on
from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.model import OneTimePreKey
from tidings.engines.cassandra import (
    PROTOCOL_VERSION,
    CassandraConfig,
    CassandraEngine,
    parse_replication,
)
from tidings.engines.cassandra_inbox import DAY_MS
from tidings.engines.cassandra_schema import MIGRATIONS, Row, execute_async, migrate
from tidings.errors import InvalidInput, Unavailable

VERSIONS = [m.version for m in MIGRATIONS]
TABLES = {
    "schema_migrations",
    "schema_lock",
    "users",
    "users_by_phone",
    "devices",
    "identity_keys",
    "signed_prekeys",
    "one_time_prekeys",
    "push_tokens",
    "push_token_owner",
    "sessions",
    "sessions_by_device",
    "contacts",
    "groups",
    "inbox",
    "inbox_index",
    "inbox_state",
    "inbox_acked",
    "analytics_daily",
    "shard_leases",
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def config(cassandra_config: CassandraConfig) -> CassandraConfig:
    """The contract keyspace, with migrations on (tests here migrate themselves)."""
    return dataclasses.replace(cassandra_config, migrate=True)


@contextlib.asynccontextmanager
async def driver_session(config: CassandraConfig) -> AsyncIterator[Any]:
    """A plain driver session (no keyspace), set up as the engine sets up its own."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=config.local_dc)),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        row_factory=dict_factory,
    )
    cluster = Cluster(
        list(config.contact_points),
        port=config.port,
        protocol_version=PROTOCOL_VERSION,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    session = await asyncio.to_thread(cluster.connect)
    try:
        yield session
    finally:
        await asyncio.to_thread(cluster.shutdown)


async def cql(session: Any, statement: str, params: Sequence[Any] = ()) -> list[Row]:
    rows, _ = await execute_async(session, statement, params or None)
    return rows


@contextlib.asynccontextmanager
async def scratch_keyspace(session: Any) -> AsyncIterator[str]:
    keyspace = f"tidings_t_{uuid.uuid4().hex[:10]}"
    try:
        yield keyspace
    finally:
        await cql(session, f"DROP KEYSPACE IF EXISTS {keyspace}")


async def schema_of(session: Any, keyspace: str) -> dict[str, Any]:
    """Everything ``system_schema`` says about ``keyspace`` (without its name)."""

    def strip(rows: list[Row]) -> list[dict[str, Any]]:
        out = [{k: v for k, v in r.items() if k != "keyspace_name"} for r in rows]
        return sorted(out, key=repr)

    where = "WHERE keyspace_name = %s"
    return {
        "keyspace": strip(
            await cql(session, f"SELECT * FROM system_schema.keyspaces {where}", [keyspace])
        ),
        "tables": strip(
            await cql(session, f"SELECT * FROM system_schema.tables {where}", [keyspace])
        ),
        "columns": strip(
            await cql(session, f"SELECT * FROM system_schema.columns {where}", [keyspace])
        ),
    }


def without_ids(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema minus table ids (which differ between two keyspaces)."""
    return {
        **schema,
        "tables": [{k: v for k, v in t.items() if k != "id"} for t in schema["tables"]],
    }


def envelope(server_id: str, timestamp: int, user: str) -> bytes:
    return Envelope(server_id, EnvelopeKind.MESSAGE, timestamp, "sender", 1, user, 1).encode()


def tombstones_in_trace(trace: Any) -> tuple[int, int]:
    """(live rows, tombstone cells) Cassandra reports having read, from a query trace."""
    for event in trace.events:
        found = re.search(r"Read (\d+) live rows and (\d+) tombstone cells", event.description)
        if found:
            return int(found.group(1)), int(found.group(2))
    raise AssertionError(f"no read summary in the trace: {[e.description for e in trace.events]}")


async def traced_read(session: Any, statement: str, params: Sequence[Any]) -> tuple[list[Row], Any]:
    """Run a read with request tracing on (blocking driver calls, so in a thread)."""

    def run() -> tuple[list[Row], Any]:
        result = session.execute(statement, params, trace=True)
        return list(result), result.get_query_trace(max_wait_sec=30)

    return await asyncio.to_thread(run)


# --------------------------------------------------------------------------- migrations


async def test_migrate_from_empty_applies_every_version_then_none(config: CassandraConfig) -> None:
    async with driver_session(config) as session, scratch_keyspace(session) as keyspace:
        assert await migrate(session, keyspace, {config.local_dc: 1}) == VERSIONS
        schema = await schema_of(session, keyspace)
        assert {t["table_name"] for t in schema["tables"]} == TABLES
        (ks,) = schema["keyspace"]
        assert ks["replication"] == {
            "class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
            config.local_dc: "1",
        }
        inbox = next(t for t in schema["tables"] if t["table_name"] == "inbox")
        assert inbox["default_time_to_live"] == 30 * 24 * 3600
        assert inbox["compaction"]["class"].endswith("TimeWindowCompactionStrategy")
        assert inbox["compaction"]["compaction_window_unit"] == "DAYS"
        assert inbox["compaction"]["compaction_window_size"] == "1"
        recorded = await cql(
            session, f"SELECT version, description FROM {keyspace}.schema_migrations"
        )
        assert sorted(r["version"] for r in recorded) == VERSIONS

        assert await migrate(session, keyspace, {config.local_dc: 1}) == []
        assert await schema_of(session, keyspace) == schema


async def test_migrate_recreates_a_table_dropped_behind_its_back(config: CassandraConfig) -> None:
    """A recorded migration whose table is gone is applied again: its ``IF NOT EXISTS``
    statements recreate the dropped table (empty) and leave the others as they are."""
    async with driver_session(config) as session, scratch_keyspace(session) as keyspace:
        assert await migrate(session, keyspace, {config.local_dc: 1}) == VERSIONS
        schema = without_ids(await schema_of(session, keyspace))
        inbox_version = next(m.version for m in MIGRATIONS if "inbox_acked" in m.tables)
        await cql(session, f"INSERT INTO {keyspace}.users (id, phone) VALUES ('u1', '+1555')")
        await cql(session, f"DROP TABLE {keyspace}.inbox_acked")

        assert await migrate(session, keyspace, {config.local_dc: 1}) == [inbox_version]
        assert without_ids(await schema_of(session, keyspace)) == schema
        kept = await cql(session, f"SELECT id FROM {keyspace}.users")
        assert [r["id"] for r in kept] == ["u1"]  # other tables untouched
        assert await migrate(session, keyspace, {config.local_dc: 1}) == []


async def test_concurrent_migrations_both_succeed(config: CassandraConfig) -> None:
    async with (
        driver_session(config) as first,
        driver_session(config) as second,  # another "process": its own cluster connection
        scratch_keyspace(first) as keyspace,
        scratch_keyspace(first) as reference,
    ):
        results = await asyncio.gather(
            migrate(first, keyspace, {config.local_dc: 1}),
            migrate(second, keyspace, {config.local_dc: 1}),
        )
        # The lease makes them take turns: one applies everything, the other nothing.
        assert sorted(results) == [[], VERSIONS]
        assert await migrate(first, reference, {config.local_dc: 1}) == VERSIONS
        assert without_ids(await schema_of(first, keyspace)) == without_ids(
            await schema_of(first, reference)
        )
        locks = await cql(first, f"SELECT name FROM {keyspace}.schema_lock")
        assert locks == []  # released


async def test_engine_without_migrations_on_a_missing_keyspace_is_unavailable(
    config: CassandraConfig,
) -> None:
    missing = CassandraConfig(
        contact_points=config.contact_points,
        port=config.port,
        local_dc=config.local_dc,
        keyspace=f"tidings_missing_{uuid.uuid4().hex[:8]}",
        migrate=False,
    )
    with pytest.raises(Unavailable, match="TIDINGS_CASSANDRA_MIGRATE=true"):
        await CassandraEngine(missing).start()


# --------------------------------------------------------------------------- inbox


async def test_in_order_acks_leave_range_tombstones_not_one_per_message(
    config: CassandraConfig,
) -> None:
    """200 messages acked one by one, as the gateway acks them: the inbox partition ends
    with one range tombstone (2 bounds), where per-message deletes leave 200.

    Evidence at two levels: the statements the engine ran (one range delete per ack
    that moved the watermark, no row deletes at all), and Cassandra's own read trace
    of the partition ("Read 0 live rows and N tombstone cells"), checked against a
    control partition deleted row by row.
    """
    user = f"{uuid.uuid4().hex[:12]}-bob"
    day = int(time.time() * 1000) // DAY_MS
    base = day * DAY_MS + 3_600_000  # one day partition for all 200
    ids = [f"m{i:03d}" for i in range(200)]
    async with engine_on(config) as engine, driver_session(config) as session:
        issued = counted(engine.messages)
        assert (
            await engine.messages.append(
                [(user, 1, sid, envelope(sid, base + i, user)) for i, sid in enumerate(ids)]
            )
            == 200
        )
        for sid in ids:
            (item,) = await engine.messages.ack(user, 1, [sid])
            assert item.server_id == sid
        # One superseding range delete per ack, and no other delete of any kind.
        assert {name: n for name, n in issued.items() if "delete" in name} == {
            "inbox.delete_through": 200
        }
        assert await engine.messages.fetch(user, 1, None, 10) == []
        assert await engine.messages.pending(user, 1) == 0

        read = (
            f"SELECT * FROM {config.keyspace}.inbox "
            "WHERE user_id = %s AND device_id = %s AND day = %s"
        )
        rows, trace = await traced_read(session, read, (user, 1, day))
        assert rows == []
        live, tombstones = tombstones_in_trace(trace)
        assert (live, tombstones) == (0, 2), trace

        # Control: the same 200 rows deleted one by one show up as 200 tombstones.
        control = f"{user}-control"
        insert = (
            f"INSERT INTO {config.keyspace}.inbox (user_id, device_id, day, pos, server_id, "
            "envelope) VALUES (%s, 1, %s, %s, %s, 0x00)"
        )
        delete = (
            f"DELETE FROM {config.keyspace}.inbox WHERE user_id = %s AND device_id = 1 "
            "AND day = %s AND pos = %s AND server_id = %s"
        )
        for statement in (insert, delete):
            await asyncio.gather(
                *(
                    cql(session, statement, (control, day, base + i, sid))
                    for i, sid in enumerate(ids)
                )
            )
        _, trace = await traced_read(session, read, (control, 1, day))
        assert tombstones_in_trace(trace) == (0, 200)


async def test_inbox_spanning_days(config: CassandraConfig) -> None:
    """Rows in three day partitions: pages cross days, an ack that moves the watermark
    into a later day deletes the earlier partitions and drops their days."""
    user = f"{uuid.uuid4().hex[:12]}-bob"
    today = int(time.time() * 1000) // DAY_MS
    days = [today - 2, today - 1, today]
    stamps = [d * DAY_MS + 1000 + i for d in days for i in range(3)]
    ids = [f"m{i}" for i in range(9)]
    ks = config.keyspace
    async with engine_on(config) as engine, driver_session(config) as session:
        inbox = engine.messages

        async def listed_days() -> list[int]:
            rows = await cql(
                session,
                f"SELECT day FROM {ks}.inbox_state WHERE user_id = %s AND device_id = 1",
                (user,),
            )
            return [r["day"] for r in rows if r["day"] is not None]

        async def stored(day: int) -> list[str]:
            rows = await cql(
                session,
                f"SELECT server_id FROM {ks}.inbox WHERE user_id = %s AND device_id = 1 "
                "AND day = %s",
                (user, day),
            )
            return [r["server_id"] for r in rows]

        rows = [(user, 1, s, envelope(s, ts, user)) for s, ts in zip(ids, stamps, strict=True)]
        store: Any = inbox
        wall = store.now_ms
        store.now_ms = lambda: stamps[0]  # appended as they came: two days ago on
        try:
            assert await inbox.append(rows) == 9
        finally:
            store.now_ms = wall
        assert await listed_days() == days
        pages, cursor = [], None
        while page := await inbox.fetch(user, 1, cursor, 4):
            pages.append([i.server_id for i in page])
            cursor = page[-1].cursor
        assert pages == [ids[0:4], ids[4:8], ids[8:9]]

        assert [i.server_id for i in await inbox.ack(user, 1, ["m4"])] == ["m4"]  # early
        assert [i.server_id for i in await inbox.ack(user, 1, ids[0:4])] == ids[0:4]
        # The watermark is m4 (day 2 of 3): the first day is gone, partition and listing.
        assert await stored(days[0]) == []
        assert await listed_days() == days[1:]
        assert await stored(days[1]) == ["m5"]
        assert [i.server_id for i in await inbox.fetch(user, 1, None, 10)] == ids[5:]
        assert await inbox.pending(user, 1) == 4

        assert [i.server_id for i in await inbox.ack(user, 1, ids[5:])] == ids[5:]
        assert await inbox.fetch(user, 1, None, 10) == []
        assert await inbox.pending(user, 1) == 0
        assert await listed_days() == days[2:]
        assert [await stored(d) for d in days] == [[], [], []]

        # A late envelope stamped in the first day lands after everything, in order, and
        # in a recent day (one that every reader looks at), not in the first day again.
        late = envelope("late", stamps[0] - 1, user)
        assert await inbox.append([(user, 1, "late", late)]) == 1
        assert [i.server_id for i in await inbox.fetch(user, 1, None, 10)] == ["late"]
        assert await stored(days[0]) == []
        assert await listed_days() == [today]


async def test_append_requires_decodable_envelopes(config: CassandraConfig) -> None:
    async with engine_on(config) as engine:
        with pytest.raises(InvalidInput, match="not an encoded Envelope"):
            await engine.messages.append([(uuid.uuid4().hex, 1, "a", b"env-a")])


# --------------------------------------------------------------------------- races


async def test_one_time_prekey_claimed_from_two_engines_is_handed_out_once(
    config: CassandraConfig,
) -> None:
    bob = f"{uuid.uuid4().hex[:12]}-bob"
    async with engine_on(config) as first, engine_on(config) as second:
        stores = [first.users, second.users]

        async def claim_20() -> list[OneTimePreKey | None]:
            return await asyncio.gather(
                *(stores[i % 2].claim_one_time_prekey(bob, 1) for i in range(20))
            )

        only = OneTimePreKey(7, b"k" * 32)
        assert await first.users.add_one_time_prekeys(bob, 1, [only], max_stored=100) == 1
        claims = await claim_20()
        assert [c for c in claims if c is not None] == [only]

        keys = [OneTimePreKey(i, bytes([i]) * 32) for i in range(10, 18)]
        assert await second.users.add_one_time_prekeys(bob, 1, keys, max_stored=100) == 8
        claimed = [c for c in await claim_20() if c is not None]
        assert sorted(c.key_id for c in claimed) == [k.key_id for k in keys]
        assert set(claimed) == set(keys)
        assert await first.users.count_one_time_prekeys(bob, 1) == 0


# --------------------------------------------------------------------------- bridge


async def test_bridge_collects_every_page(config: CassandraConfig) -> None:
    query = "SELECT keyspace_name, table_name, column_name FROM system_schema.columns"
    async with driver_session(config) as session:
        whole = await cql(session, query)
        paged, response = await execute_async(session, SimpleStatement(query, fetch_size=7))
        assert len(whole) > 7 * 10  # many pages of 7
        assert not response.has_more_pages
        assert sorted(map(repr, paged)) == sorted(map(repr, whole))


# --------------------------------------------------------------------------- errors, config


async def test_unreachable_contact_point_is_unavailable(config: CassandraConfig) -> None:
    engine = CassandraEngine(
        CassandraConfig(contact_points=("127.0.0.1",), port=1, local_dc=config.local_dc)
    )
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1") as raised:
        await engine.start()
    assert "TIDINGS_CASSANDRA_CONTACT_POINTS" in raised.value.message
    assert raised.value.retryable
    with pytest.raises(Unavailable, match="not started"):
        await engine.users.get_user("alice")
    with pytest.raises(Unavailable, match="not started"):
        await engine.ping()
    await engine.close()


async def test_engine_profile_and_ping(config: CassandraConfig) -> None:
    async with engine_on(config) as engine:
        await engine.ping()
        await engine.users.ping()
        await engine.messages.ping()
        cluster: Any = engine._cluster
        profile = cluster.profile_manager.profiles[EXEC_PROFILE_DEFAULT]
        assert profile.consistency_level == ConsistencyLevel.LOCAL_QUORUM
        assert profile.serial_consistency_level == ConsistencyLevel.LOCAL_SERIAL
        assert isinstance(profile.load_balancing_policy, TokenAwarePolicy)
        assert isinstance(profile.load_balancing_policy._child_policy, DCAwareRoundRobinPolicy)
        assert cluster.protocol_version == PROTOCOL_VERSION
    with pytest.raises(Unavailable, match="not started"):
        await engine.ping()


async def test_every_connection_sends_at_once(config: CassandraConfig) -> None:
    """Nagle off on the engine's sockets: with it on, a request written behind one not
    yet acknowledged waits for the node's delayed ACK (a batch took 40 ms, not 2)."""
    async with engine_on(config) as engine:
        cluster: Any = engine._cluster
        session: Any = engine._cql.session
        connections = [pool._connection for pool in session.get_pools()]
        connections.append(cluster.control_connection._connection)
        assert connections
        for connection in connections:
            option = connection._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert option != 0, connection


def test_parse_replication() -> None:
    assert parse_replication("", "local") == {"local": 1}
    assert parse_replication("  ", "local") == {"local": 1}
    assert parse_replication("us-east:3,eu-west:3", "us-east") == {"us-east": 3, "eu-west": 3}
    assert parse_replication(" dc1 : 2 ", "dc1") == {"dc1": 2}
    for bad in ("us-east", "us-east:", "us-east:x", ":3", "a:0", "a:99", "a:1,a:2", "a b:1"):
        with pytest.raises(ValueError, match="replication"):
            parse_replication(bad, "local")
