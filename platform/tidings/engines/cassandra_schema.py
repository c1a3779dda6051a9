"""Lowest layer of the Cassandra engine: CQL from asyncio, driver errors, the schema.

- ``Cql`` runs prepared statements through ``Session.execute_async``: the driver's
  ``ResponseFuture`` callbacks (on its I/O thread) resolve an ``asyncio.Future`` with
  ``loop.call_soon_threadsafe``; further pages are requested from the callback the
  same way. Nothing here blocks the event loop (preparing, which the driver only
  offers as a blocking call, runs in ``asyncio.to_thread``).
- Every driver error comes out as ``tidings.errors.Unavailable`` whose message says
  what to do (``raise ... from`` keeps the driver's exception as ``__cause__``).
- The schema is code: ``MIGRATIONS`` is an ordered list of (version, description, CQL
  statements); ``migrate`` applies the missing ones and records each in
  ``schema_migrations``. Every statement is ``CREATE ... IF NOT EXISTS``, each schema
  change waits for schema agreement, and a lease row (``schema_lock``, lightweight
  transaction at SERIAL, TTL) makes concurrent migrators take turns, so running it
  twice or from two processes at once is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cassandra import (  # type: ignore[import-untyped]
    AuthenticationFailed,
    ConsistencyLevel,
    CoordinationFailure,
    DriverException,
    OperationTimedOut,
    RequestValidationException,
    Timeout,
    WriteTimeout,
    WriteType,
)
from cassandra import Unavailable as ReplicasUnavailable
from cassandra.cluster import NoHostAvailable  # type: ignore[import-untyped]
from cassandra.connection import ConnectionException  # type: ignore[import-untyped]
from cassandra.protocol import ErrorMessage  # type: ignore[import-untyped]
from cassandra.protocol import RequestValidationException as ServerRejected
from cassandra.query import BatchStatement, BatchType  # type: ignore[import-untyped]

from tidings.engines.cassandra_batching import SharedBatches, Write, estimated_size
from tidings.engines.cassandra_reads import PointRead, SharedReads
from tidings.errors import Unavailable

log = logging.getLogger(__name__)

Row = dict[str, Any]
"""A result row by column name (the engine's execution profile uses ``dict_factory``)."""

INBOX_TTL_S = 30 * 24 * 3600
"""The inbox tables' ``default_time_to_live``; the engine also binds its configured TTL
on every inbox write, so a different ``inbox_ttl_s`` needs no schema change."""

KEYSPACE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
DC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_LOCK_TTL_S = 120
"""A crashed migrator's lease expires after this; its successor redoes the (idempotent)
statements of the version it was applying."""
_LOCK_WAIT_S = 300.0
_LOCK_POLL_S = 0.25
_SCHEMA_AGREEMENT_WAIT_S = 60

SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
"""The driver leaves Nagle's algorithm on. A request written while the previous one is
still unacknowledged (a batch, or statements issued back to back) then waits for the
peer's delayed ACK, 40 ms on Linux: a batch of 20 writes took 47 ms on loopback with it
on, 2 ms with it off, and Cassandra spent several times the CPU per write meanwhile."""

DRIVER_ERRORS = (DriverException, NoHostAvailable, ConnectionException, ErrorMessage, OSError)


# --------------------------------------------------------------------------- errors


def unavailable(exc: BaseException, what: str, where: str) -> Unavailable:
    """The ``Unavailable`` to raise (``from exc``) for a driver error during ``what``."""
    if isinstance(exc, NoHostAvailable):
        causes = "; ".join(f"{host}: {err}" for host, err in exc.errors.items()) or str(exc)
        if any(isinstance(err, AuthenticationFailed) for err in exc.errors.values()):
            hint = "check TIDINGS_CASSANDRA_USERNAME / TIDINGS_CASSANDRA_PASSWORD"
        else:
            hint = (
                f"check that Cassandra is up and reachable at {where} "
                "(TIDINGS_CASSANDRA_CONTACT_POINTS, _PORT, _LOCAL_DC), then retry"
            )
        return Unavailable(f"cassandra: {what}: no node answered ({causes}); {hint}")
    if isinstance(exc, WriteTimeout) and getattr(exc, "write_type", None) == WriteType.CAS:
        return Unavailable(
            f"cassandra: {what}: a lightweight transaction timed out under contention and "
            f"its outcome is unknown ({exc}); retry"
        )
    if isinstance(exc, ReplicasUnavailable):
        return Unavailable(
            f"cassandra: {what}: too few replicas alive in the local datacenter for "
            f"LOCAL_QUORUM ({exc}); restore the down nodes or retry later"
        )
    if isinstance(exc, Timeout | OperationTimedOut | CoordinationFailure):
        return Unavailable(
            f"cassandra: {what}: replicas failed or did not answer in time "
            f"({type(exc).__name__}: {exc}); retry shortly"
        )
    if isinstance(exc, RequestValidationException | ServerRejected):
        return Unavailable(
            f"cassandra: {what} was rejected ({type(exc).__name__}: {exc}); the keyspace "
            "schema may be missing or older than this version: start once with "
            "TIDINGS_CASSANDRA_MIGRATE=true, and check the role's permissions"
        )
    return Unavailable(
        f"cassandra: {what} failed ({type(exc).__name__}: {exc}); check the cluster at "
        f"{where}, then retry"
    )


# --------------------------------------------------------------------------- CQL on asyncio


@dataclass(frozen=True)
class Query:
    """A prepared statement and the name its errors carry."""

    name: str
    prepared: Any


class Statements(dict[str, Query]):
    """A store's prepared statements by name; empty until the engine is started."""

    def __missing__(self, name: str) -> Query:
        raise Unavailable(f"cassandra: {name}: the engine is not started (or is closed)")


def _resolve(future: asyncio.Future[list[Row]], rows: list[Row]) -> None:
    if not future.done():
        future.set_result(rows)


def _fail(future: asyncio.Future[list[Row]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def execute_async(session: Any, statement: Any, params: Any = None) -> tuple[list[Row], Any]:
    """Run ``statement`` and collect every page; returns (rows, the driver's future).

    Raises the driver's exceptions as they are (``Cql.run`` translates them).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Row]] = loop.create_future()
    rows: list[Row] = []

    def settle(fn: Any, value: Any) -> None:
        # The loop may be closed already when a late answer arrives (its caller gone).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, done, value)

    response = session.execute_async(statement, params)

    def on_page(page: Any) -> None:  # driver I/O thread
        try:
            if page:
                rows.extend(page)
            if response.has_more_pages:
                response.start_fetching_next_page()  # calls on_page / on_error again
            else:
                settle(_resolve, rows)
        except BaseException as exc:
            settle(_fail, exc)

    def on_error(exc: BaseException) -> None:  # driver I/O thread
        settle(_fail, exc)

    response.add_callbacks(on_page, on_error)
    return await done, response


class Cql:
    """The driver session of one engine, shared by its stores.

    ``session`` is set by ``CassandraEngine.start``; until then (and after ``close``)
    every call raises ``Unavailable``.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.session: Any = None
        self._shared: SharedBatches | None = None
        # ``run`` looked up at each read: what wraps it (a test counting statements)
        # sees the shared reads too.
        self._reads = SharedReads(lambda query, params: self.run(query, params))

    def _session(self, what: str) -> Any:
        if self.session is None:
            raise Unavailable(f"cassandra: {what}: the engine is not started (or is closed)")
        return self.session

    async def prepare(self, name: str, cql: str, *, serial: bool = False) -> Query:
        """Prepare ``cql``; ``serial`` reads run at LOCAL_SERIAL (see in-flight LWTs)."""
        session = self._session(f"prepare {name}")
        try:
            prepared = await asyncio.to_thread(session.prepare, cql)
        except DRIVER_ERRORS as exc:
            raise unavailable(exc, f"prepare {name}", self.where) from exc
        if serial:
            prepared.consistency_level = ConsistencyLevel.LOCAL_SERIAL
        return Query(name, prepared)

    async def run(self, query: Query, params: Sequence[Any] = ()) -> list[Row]:
        session = self._session(query.name)
        try:
            rows, _ = await execute_async(session, query.prepared.bind(params))
        except DRIVER_ERRORS as exc:
            raise unavailable(exc, query.name, self.where) from exc
        return rows

    async def one(self, query: Query, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.run(query, params)
        return rows[0] if rows else None

    async def read_shared(self, read: PointRead, key: Any, rest: Sequence[Any] = ()) -> list[Row]:
        """The rows of one partition, ``read.one`` with ``(key, *rest)``; point reads of
        other callers at the same moment may share one request (``cassandra_reads``)."""
        return await self._reads.read(read, key, tuple(rest))

    async def applied(self, query: Query, params: Sequence[Any] = ()) -> tuple[bool, Row]:
        """Run a lightweight transaction: (applied, the row it returned)."""
        row = await self.one(query, params)
        if row is None:
            raise Unavailable(f"cassandra: {query.name}: no [applied] row in the answer")
        return bool(row["[applied]"]), row

    async def batch(
        self,
        name: str,
        parts: Sequence[tuple[Query, Sequence[Any]]],
        *,
        logged: bool = False,
        counter: bool = False,
    ) -> list[Row]:
        """One batch (unlogged unless ``logged``; ``counter`` for counter updates, which
        may not share a batch with anything else): single-partition batches are atomic
        and isolated, and with a condition they are one lightweight transaction."""
        session = self._session(name)
        kind = BatchType.COUNTER if counter else BatchType.LOGGED if logged else BatchType.UNLOGGED
        batch = BatchStatement(batch_type=kind)
        for query, params in parts:
            batch.add(query.prepared, params)
        try:
            rows, _ = await execute_async(session, batch)
        except DRIVER_ERRORS as exc:
            raise unavailable(exc, name, self.where) from exc
        return rows

    async def write_shared(self, name: str, parts: Sequence[tuple[Query, Sequence[Any]]]) -> None:
        """``batch`` for writes without a condition that may share one request with other
        callers' (``cassandra_batching``): applied atomically per partition all the same."""
        self._session(name)  # not started: Unavailable at once
        if self._shared is None:
            self._shared = SharedBatches(self._send_shared)
        statements, partitions, size = [], set(), 0
        for query, params in parts:
            prepared = query.prepared
            statements.append(prepared.bind(params))
            # The partition key's values, not its serialized bytes (the driver would
            # serialize them again): statements of two tables under one key count once,
            # as the node counts them.
            if (key := prepared.routing_key_indexes) is not None:
                partitions.add(tuple(params[i] for i in key))
            size += estimated_size(params)
        write = self._shared.write(name, statements, frozenset(partitions), size)
        try:
            await write.done
        except DRIVER_ERRORS as exc:
            raise unavailable(exc, name, self.where) from exc

    async def _send_shared(self, writes: Sequence[Write]) -> None:
        session = self._session(writes[0].name)
        if len(writes) == 1 and len(writes[0].statements) == 1:
            statement = writes[0].statements[0]
        else:
            statement = BatchStatement(batch_type=BatchType.UNLOGGED)
            for write in writes:
                for bound in write.statements:
                    statement.add(bound)
        await execute_async(session, statement)

    async def batch_applied(
        self, name: str, parts: Sequence[tuple[Query, Sequence[Any]]]
    ) -> tuple[bool, list[Row]]:
        rows = await self.batch(name, parts)
        if not rows:
            raise Unavailable(f"cassandra: {name}: no [applied] row in the answer")
        return bool(rows[0]["[applied]"]), rows


async def gather_bounded(limit: int, *aws: Any) -> list[Any]:
    """``asyncio.gather`` with at most ``limit`` awaitables in flight."""
    gate = asyncio.Semaphore(limit)

    async def one(aw: Any) -> Any:
        async with gate:
            return await aw

    return list(await asyncio.gather(*(one(aw) for aw in aws)))


# --------------------------------------------------------------------------- schema

_TWCS_DAILY = (
    "{'class': 'TimeWindowCompactionStrategy', "
    "'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}"
)


_CREATES_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS \{ks\}\.(\w+)")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    """CQL with ``{ks}`` for the keyspace; each must be idempotent (``IF NOT EXISTS``)."""

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables its statements create."""
        return tuple(m.group(1) for s in self.statements if (m := _CREATES_TABLE.match(s)))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "accounts: users, phones, devices, keys, sessions, push tokens, contacts, groups",
        (
            # Phone uniqueness: the users row is written first, then the phone is
            # claimed with INSERT ... IF NOT EXISTS (the loser deletes its users row).
            "CREATE TABLE IF NOT EXISTS {ks}.users ("
            " id text PRIMARY KEY, phone text, created_at double, display_name text,"
            " about text, presence_privacy text)",
            "CREATE TABLE IF NOT EXISTS {ks}.users_by_phone (phone text PRIMARY KEY, user_id text)",
            # One partition per user. Every change of the device set is a conditional
            # batch on the static ``version`` (lightweight transaction), so ids and the
            # max_devices check are race-free; ``next_device`` makes ids never reused.
            "CREATE TABLE IF NOT EXISTS {ks}.devices ("
            " user_id text, device_id int, name text, registration_id int,"
            " created_at double, next_device int STATIC, version int STATIC,"
            " PRIMARY KEY (user_id, device_id))",
            "CREATE TABLE IF NOT EXISTS {ks}.identity_keys (user_id text PRIMARY KEY, key blob)",
            "CREATE TABLE IF NOT EXISTS {ks}.signed_prekeys ("
            " user_id text, device_id int, key_id int, public_key blob, signature blob,"
            " PRIMARY KEY ((user_id, device_id)))",
            # Claimed with DELETE ... IF public_key = ? (exactly once); uploads are a
            # conditional batch on the static ``version`` so the stored-count limit holds.
            "CREATE TABLE IF NOT EXISTS {ks}.one_time_prekeys ("
            " user_id text, device_id int, key_id int, public_key blob, version int STATIC,"
            " PRIMARY KEY ((user_id, device_id), key_id))",
            "CREATE TABLE IF NOT EXISTS {ks}.push_tokens ("
            " user_id text, device_id int, provider text, push_token text, alert boolean,"
            " updated_at double, PRIMARY KEY (user_id, device_id))",
            # Which device holds a token: moved by lightweight transaction, and the
            # truth that reads of push_tokens are checked against.
            "CREATE TABLE IF NOT EXISTS {ks}.push_token_owner ("
            " provider text, push_token text, user_id text, device_id int,"
            " PRIMARY KEY ((provider, push_token)))",
            # Bearer sessions expire by TTL (a grace period after expires_at, so the
            # service can still tell "expired" from "unknown").
            "CREATE TABLE IF NOT EXISTS {ks}.sessions ("
            " token_hash text PRIMARY KEY, kind text, user_id text, device_id int,"
            " expires_at double)",
            "CREATE TABLE IF NOT EXISTS {ks}.sessions_by_device ("
            " user_id text, device_id int, token_hash text,"
            " PRIMARY KEY ((user_id, device_id), token_hash))",
            "CREATE TABLE IF NOT EXISTS {ks}.contacts ("
            " user_id text, contact_id text, PRIMARY KEY (user_id, contact_id))",
            # A group is one partition: its fields static, one row per member.
            "CREATE TABLE IF NOT EXISTS {ks}.groups ("
            " group_id text, user_id text, role text, name text STATIC,"
            " created_by text STATIC, created_at double STATIC,"
            " PRIMARY KEY (group_id, user_id))",
        ),
    ),
    Migration(
        2,
        "inbox per device: day partitions, server-id index, ack watermark, acked above it",
        (
            # Rows in append order: ``pos`` is the envelope timestamp (ms), raised when
            # needed to stay above the device's last position. Acked prefixes go by
            # range deletes; everything expires with the inbox TTL.
            "CREATE TABLE IF NOT EXISTS {ks}.inbox ("
            " user_id text, device_id int, day int, pos bigint, server_id text,"
            " envelope blob, PRIMARY KEY ((user_id, device_id, day), pos, server_id))"
            " WITH CLUSTERING ORDER BY (pos ASC, server_id ASC)"
            f" AND default_time_to_live = {INBOX_TTL_S}"
            f" AND compaction = {_TWCS_DAILY}",
            # server id -> position, for every id appended in the last TTL: makes
            # append idempotent (and blocks acked ids), lets ack find rows.
            # ``last_pos``: the device's last position, written with the index rows.
            "CREATE TABLE IF NOT EXISTS {ks}.inbox_index ("
            " user_id text, device_id int, server_id text, day int, pos bigint,"
            " last_pos bigint STATIC, PRIMARY KEY ((user_id, device_id), server_id))"
            f" WITH default_time_to_live = {INBOX_TTL_S}",
            # Per device: the watermark (end of the contiguous acked prefix, static)
            # and one clustering row per day that may hold unacked rows.
            "CREATE TABLE IF NOT EXISTS {ks}.inbox_state ("
            " user_id text, device_id int, day int, wm_pos bigint STATIC,"
            " wm_sid text STATIC, PRIMARY KEY ((user_id, device_id), day))"
            f" WITH default_time_to_live = {INBOX_TTL_S}",
            # Acks above the watermark (out of order), range-deleted once it passes.
            "CREATE TABLE IF NOT EXISTS {ks}.inbox_acked ("
            " user_id text, device_id int, pos bigint, server_id text,"
            " PRIMARY KEY ((user_id, device_id), pos, server_id))"
            f" WITH default_time_to_live = {INBOX_TTL_S}",
        ),
    ),
    Migration(
        3,
        "analytics: daily counters of metadata events",
        (
            "CREATE TABLE IF NOT EXISTS {ks}.analytics_daily ("
            " day text, name text, value counter, PRIMARY KEY (day, name))",
        ),
    ),
    Migration(
        4,
        "shard leases: which region may store for a shard (core.leases)",
        (
            # Written only by lightweight transactions at SERIAL: a majority of every
            # datacenter's replicas decides, so a region cut off from the others
            # cannot renew or take a lease.
            "CREATE TABLE IF NOT EXISTS {ks}.shard_leases ("
            " shard text PRIMARY KEY, owner text, epoch bigint, until_ms bigint)",
        ),
    ),
)


def platform_tables() -> tuple[str, ...]:
    """Every table the migrations create, in migration order."""
    return tuple(table for migration in MIGRATIONS for table in migration.tables)


def replication_cql(replication: Mapping[str, int]) -> str:
    """The keyspace's replication map as CQL (NetworkTopologyStrategy)."""
    if not replication:
        raise ValueError("replication needs at least one datacenter")
    parts = ["'class': 'NetworkTopologyStrategy'"]
    for dc, replicas in replication.items():
        if not DC_NAME.match(dc):
            raise ValueError(f"datacenter name {dc!r} is not valid")
        if not isinstance(replicas, int) or not 1 <= replicas <= 32:
            raise ValueError(f"replicas for {dc!r} must be 1..32, not {replicas!r}")
        parts.append(f"'{dc}': {replicas}")
    return "{" + ", ".join(parts) + "}"


async def _ddl(session: Any, cql: str, what: str) -> None:
    """Run one schema change and make sure every node agrees on the schema after it."""
    try:
        _, response = await execute_async(session, cql)
        agreed = getattr(response, "is_schema_agreed", True)
        if not agreed:
            control = session.cluster.control_connection
            agreed = await asyncio.to_thread(
                control.wait_for_schema_agreement, wait_time=_SCHEMA_AGREEMENT_WAIT_S
            )
    except DRIVER_ERRORS as exc:
        raise unavailable(exc, what, "the contact points") from exc
    if not agreed:
        raise Unavailable(
            f"cassandra: {what}: nodes did not agree on the schema within "
            f"{_SCHEMA_AGREEMENT_WAIT_S}s; check that every node is up, then retry"
        )


async def _run(session: Any, statement: Any, params: Sequence[Any], what: str) -> list[Row]:
    try:
        rows, _ = await execute_async(session, statement, params)
    except DRIVER_ERRORS as exc:
        raise unavailable(exc, what, "the contact points") from exc
    return rows


async def _prepare(session: Any, cql: str, what: str) -> Any:
    try:
        return await asyncio.to_thread(session.prepare, cql)
    except DRIVER_ERRORS as exc:
        raise unavailable(exc, what, "the contact points") from exc


async def migrate(session: Any, keyspace: str, replication: Mapping[str, int]) -> list[int]:
    """Apply the missing ``MIGRATIONS`` to ``keyspace``; returns the versions applied now.

    Creates the keyspace (NetworkTopologyStrategy with ``replication``) when absent; an
    existing keyspace's replication is left alone (changing it needs a repair, an
    operator's decision). Idempotent, and safe from several processes at once.
    """
    if not KEYSPACE_NAME.match(keyspace):
        raise ValueError(f"keyspace name {keyspace!r} must match {KEYSPACE_NAME.pattern}")
    started = time.perf_counter()
    await _ddl(
        session,
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{replication_cql(replication)}",
        f"create keyspace {keyspace}",
    )
    await _ddl(
        session,
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
        " version int PRIMARY KEY, description text, applied_at timestamp)",
        "create schema_migrations",
    )
    await _ddl(
        session,
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_lock (name text PRIMARY KEY, owner text)",
        "create schema_lock",
    )
    versions = await _prepare(
        session, f"SELECT version FROM {keyspace}.schema_migrations", "read schema versions"
    )
    tables = await _prepare(
        session,
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
        "read the keyspace's tables",
    )

    async def missing() -> list[int]:
        """Versions not recorded, and recorded ones with a table gone (dropped behind our
        back: applied again, its ``IF NOT EXISTS`` statements recreate only what is gone)."""
        recorded, listed = await asyncio.gather(
            _run(session, versions, (), "read schema versions"),
            _run(session, tables, (keyspace,), "read the keyspace's tables"),
        )
        present = {int(r["version"]) for r in recorded}
        found = {str(r["table_name"]) for r in listed}
        return [
            m.version
            for m in MIGRATIONS
            if m.version not in present or not found.issuperset(m.tables)
        ]

    if not await missing():
        return []

    take = await _prepare(
        session,
        f"INSERT INTO {keyspace}.schema_lock (name, owner) VALUES ('migrations', ?) "
        f"IF NOT EXISTS USING TTL {_LOCK_TTL_S}",
        "take the migration lease",
    )
    release = await _prepare(
        session,
        f"DELETE FROM {keyspace}.schema_lock WHERE name = 'migrations' IF owner = ?",
        "release the migration lease",
    )
    record = await _prepare(
        session,
        f"INSERT INTO {keyspace}.schema_migrations (version, description, applied_at) "
        "VALUES (?, ?, toTimestamp(now()))",
        "record a schema version",
    )
    # Schema is cluster-wide: the lease is taken at SERIAL, not LOCAL_SERIAL, so two
    # regions migrating at once also take turns.
    take.serial_consistency_level = ConsistencyLevel.SERIAL
    release.serial_consistency_level = ConsistencyLevel.SERIAL

    owner = uuid.uuid4().hex
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        rows = await _run(session, take, (owner,), "take the migration lease")
        if rows and rows[0]["[applied]"]:
            break
        if not await missing():
            return []  # another process applied them while we waited
        if time.monotonic() > deadline:
            holder = rows[0].get("owner") if rows else None
            raise Unavailable(
                f"cassandra: migrations of {keyspace} are held by another process "
                f"({holder}) for over {_LOCK_WAIT_S:.0f}s; retry when it is done"
            )
        await asyncio.sleep(_LOCK_POLL_S)

    done: list[int] = []
    try:
        todo = await missing()
        for migration in MIGRATIONS:
            if migration.version not in todo:
                continue
            for number, statement in enumerate(migration.statements, 1):
                await _ddl(
                    session,
                    statement.replace("{ks}", keyspace),
                    f"migration {migration.version} statement {number}",
                )
            await _run(
                session,
                record,
                (migration.version, migration.description),
                f"record migration {migration.version}",
            )
            done.append(migration.version)
            log.info("cassandra: %s: applied migration %d", keyspace, migration.version)
    finally:
        with contextlib.suppress(Unavailable):
            await _run(session, release, (owner,), "release the migration lease")
    log.info(
        "cassandra: %s: migrations %s applied in %.1fs",
        keyspace,
        done,
        time.perf_counter() - started,
    )
    return done


__all__ = [
    "DRIVER_ERRORS",
    "INBOX_TTL_S",
    "MIGRATIONS",
    "Cql",
    "Migration",
    "Query",
    "Row",
    "Statements",
    "execute_async",
    "gather_bounded",
    "migrate",
    "platform_tables",
    "replication_cql",
    "unavailable",
]
