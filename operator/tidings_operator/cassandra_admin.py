"""The operator's thin shell over Cassandra (cassandra-driver 3.30): blocking calls the
caller runs in a thread (``asyncio.to_thread``)::

    with connect(spec.contact_points, spec.port, local_dc=region.datacenter) as session:
        plan = plan_keyspace(keyspace, region.replication, observe_keyspace(session, keyspace))
        run_plan(session, plan)
        ensure_schema(session, keyspace)

``resources.keyspace`` decides what DDL to run; this module reads
``system_schema.keyspaces``, runs the DDL and waits until every node agrees on the
schema. The platform's tables come from the platform's own migrations
(``tidings.engines.cassandra_schema.migrate``), so the operator and ``tidings serve``
can never disagree about them (the one import of an engine module the operator's
import contract allows).

Failures come out as ``ExternalUnavailable``: ``CassandraUnavailable`` when no node
answered or a request timed out, ``CassandraRejected`` when Cassandra refused (bad
credentials, an unknown datacenter, missing permissions); the message names the
contact points and what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cassandra import (  # type: ignore[import-untyped]
    AuthenticationFailed,
    ConsistencyLevel,
    ProtocolVersion,
    RequestValidationException,
)
from cassandra.auth import PlainTextAuthProvider  # type: ignore[import-untyped]
from cassandra.cluster import (  # type: ignore[import-untyped]
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
)
from cassandra.io.libevreactor import LibevConnection  # type: ignore[import-untyped]
from cassandra.policies import DCAwareRoundRobinPolicy  # type: ignore[import-untyped]
from cassandra.protocol import RequestValidationException as ServerRejected  # type: ignore[import-untyped]
from cassandra.query import dict_factory  # type: ignore[import-untyped]

from tidings.engines.cassandra_schema import (
    DRIVER_ERRORS,
    SOCKET_OPTIONS,
    migrate,
    platform_tables,
)
from tidings.errors import Unavailable
from tidings_operator.external import CASSANDRA_REJECTED, CASSANDRA_UNAVAILABLE, ExternalUnavailable
from tidings_operator.resources.keyspace import (
    KeyspacePlan,
    ObservedKeyspace,
    plan_keyspace,
    plan_keyspace_deletion,
)

CONNECT_TIMEOUT_S = 5.0
"""Per connection attempt, and for the control connection."""
REQUEST_TIMEOUT_S = 30.0
"""Per statement (DDL included)."""
SCHEMA_AGREEMENT_S = 60.0
"""How long a schema change may take to reach every node."""


def _where(contact_points: Sequence[str], port: int) -> str:
    return f"{','.join(contact_points)}:{port}"


def host_errors(errors: object) -> dict[str, BaseException | None]:
    """``NoHostAvailable.errors`` as host -> error, whatever shape the driver gave it: a
    dict when hosts were tried and failed, a list of addresses when it found no host to
    try (e.g. none in the local datacenter), or nothing at all."""
    if isinstance(errors, Mapping):
        return {
            str(host): err if isinstance(err, BaseException) else None
            for host, err in errors.items()
        }
    if isinstance(errors, list | tuple | set | frozenset):
        return {str(host): None for host in errors}
    return {}


def _translate(
    exc: BaseException, what: str, where: str, local_dc: str | None = None
) -> ExternalUnavailable:
    """The ``ExternalUnavailable`` to raise (``from exc``) for a driver error."""
    if isinstance(exc, NoHostAvailable):
        errors = host_errors(exc.errors)
        tried = {host: err for host, err in errors.items() if err is not None}
        causes = "; ".join(f"{host}: {err}" for host, err in tried.items()) or str(exc.args[0])
        if any(isinstance(err, AuthenticationFailed) for err in tried.values()):
            return ExternalUnavailable(
                CASSANDRA_REJECTED,
                f"Cassandra at {where}: {what}: login refused ({causes}); check the user name "
                "and password in spec.cassandra.credentialsSecret",
            )
        if errors and not tried and local_dc:
            # Nodes answered the control connection but none is in the local datacenter,
            # so the driver opened no pool: the datacenter name is wrong.
            return ExternalUnavailable(
                CASSANDRA_REJECTED,
                f"Cassandra at {where}: {what}: no node of datacenter {local_dc!r} among "
                f"{', '.join(sorted(errors))}; check spec.cassandra.datacenter against the "
                "cluster's datacenters (nodetool status)",
            )
        return ExternalUnavailable(
            CASSANDRA_UNAVAILABLE,
            f"Cassandra at {where}: {what}: no node answered ({causes}); check that "
            "Cassandra is up and reachable from the operator (spec.cassandra.contactPoints "
            "and port)",
        )
    if isinstance(exc, RequestValidationException | ServerRejected):
        return ExternalUnavailable(
            CASSANDRA_REJECTED,
            f"Cassandra at {where} refused to {what} ({type(exc).__name__}: {exc}); check "
            "spec.cassandra (datacenter names must be the cluster's, replicas 1..32) and "
            "that the operator's role may alter keyspaces",
        )
    if isinstance(exc, Unavailable):  # the platform's migrations say what to do already
        return ExternalUnavailable(CASSANDRA_UNAVAILABLE, f"Cassandra at {where}: {exc}")
    return ExternalUnavailable(
        CASSANDRA_UNAVAILABLE,
        f"Cassandra at {where}: {what} failed ({type(exc).__name__}: {exc}); check that "
        "every node is up, then retry",
    )


def _where_of(session: Any) -> str:
    cluster = session.cluster
    return _where([str(c) for c in cluster.contact_points], cluster.port)


@contextlib.contextmanager
def connect(
    contact_points: Sequence[str],
    port: int,
    username: str | None = None,
    password: str | None = None,
    local_dc: str | None = None,
) -> Iterator[Any]:
    """A session for the block (rows as dicts; LOCAL_QUORUM in ``local_dc``, by default
    the first contact point's datacenter); the cluster is shut down after it."""
    where = _where(contact_points, port)
    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=local_dc or ""),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=REQUEST_TIMEOUT_S,
        row_factory=dict_factory,  # what the platform's migrations read rows with
    )
    cluster = Cluster(
        contact_points=list(contact_points),
        port=port,
        # Cassandra 4.0+ speaks v5; naming it avoids the driver's negotiation (as the
        # platform's engine does).
        protocol_version=ProtocolVersion.V5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connection_class=LibevConnection,
        sockopts=SOCKET_OPTIONS,
        auth_provider=(
            PlainTextAuthProvider(username=username, password=password or "") if username else None
        ),
        connect_timeout=CONNECT_TIMEOUT_S,
        control_connection_timeout=CONNECT_TIMEOUT_S,
        max_schema_agreement_wait=SCHEMA_AGREEMENT_S,
    )
    try:
        try:
            session = cluster.connect()
        except DRIVER_ERRORS as exc:
            raise _translate(exc, "connect", where, local_dc) from exc
        yield session
    finally:
        cluster.shutdown()


def observe_keyspace(session: Any, keyspace: str) -> ObservedKeyspace | None:
    """The keyspace's replication as ``system_schema.keyspaces`` has it; None if absent."""
    try:
        row = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
            (keyspace,),
        ).one()
    except DRIVER_ERRORS as exc:
        raise _translate(exc, f"read keyspace {keyspace}", _where_of(session)) from exc
    if row is None:
        return None
    return ObservedKeyspace.from_system_schema(dict(row.get("replication") or {}))


def missing_tables(session: Any, keyspace: str) -> list[str]:
    """The platform's tables ``system_schema.tables`` does not list in ``keyspace``."""
    try:
        rows = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
            (keyspace,),
        )
    except DRIVER_ERRORS as exc:
        raise _translate(exc, f"read the tables of {keyspace}", _where_of(session)) from exc
    listed = {str(row["table_name"]) for row in rows}
    return [table for table in platform_tables() if table not in listed]


def run_plan(session: Any, plan: KeyspacePlan) -> None:
    """Run the plan's statements in order, each once every node agrees on the schema
    after it. Refusals and follow-ups are the caller's to report."""
    where = _where_of(session)
    for statement in plan.statements:
        what = f"run {statement.split(' WITH ')[0]}"  # e.g. "run ALTER KEYSPACE tidings"
        try:
            result = session.execute(statement)
            agreed = result.response_future.is_schema_agreed
            if not agreed:
                agreed = session.cluster.control_connection.wait_for_schema_agreement(
                    wait_time=SCHEMA_AGREEMENT_S
                )
        except DRIVER_ERRORS as exc:
            raise _translate(exc, what, where) from exc
        if not agreed:
            raise ExternalUnavailable(
                CASSANDRA_UNAVAILABLE,
                f"Cassandra at {where}: nodes did not agree on the schema within "
                f"{SCHEMA_AGREEMENT_S:g}s after {statement!r}; check that every node is up "
                "(nodetool describecluster), then retry",
            )


def converge_keyspace(session: Any, keyspace: str, replication: Mapping[str, int]) -> KeyspacePlan:
    """Observe, plan and run: the keyspace created, or its replication aligned with
    ``replication`` (unless refused). Returns the plan, for Events and conditions."""
    plan = plan_keyspace(keyspace, replication, observe_keyspace(session, keyspace))
    run_plan(session, plan)
    return plan


def ensure_schema(session: Any, keyspace: str) -> list[int]:
    """The platform's tables in ``keyspace``, by its own numbered migrations; returns the
    versions applied now. The keyspace must exist (``run_plan`` creates it): its
    replication is the operator's to decide, never the migrations'. Blocking: runs the
    platform's asyncio migrations on an event loop of the calling thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("ensure_schema blocks: call it in a thread (asyncio.to_thread)")
    observed = observe_keyspace(session, keyspace)
    if observed is None:
        raise ValueError(f"keyspace {keyspace} does not exist: run its keyspace plan first")
    # Only the migrations' ``CREATE KEYSPACE IF NOT EXISTS`` reads it: a no-op here.
    replication = dict(observed.replication) or {_local_datacenter(session): 1}
    try:
        return asyncio.run(migrate(session, keyspace, replication))
    except (*DRIVER_ERRORS, Unavailable) as exc:
        raise _translate(exc, f"migrate keyspace {keyspace}", _where_of(session)) from exc


def _local_datacenter(session: Any) -> str:
    try:
        row = session.execute("SELECT data_center FROM system.local").one()
    except DRIVER_ERRORS as exc:
        raise _translate(exc, "read the local datacenter", _where_of(session)) from exc
    if row is None:
        raise ExternalUnavailable(
            CASSANDRA_UNAVAILABLE,
            f"Cassandra at {_where_of(session)}: system.local returned no row; retry",
        )
    return str(row["data_center"])


def delete_datacenter(session: Any, keyspace: str, datacenter: str) -> KeyspacePlan:
    """``deletionPolicy: Delete`` of the region in ``datacenter``: its replicas dropped
    from the keyspace, or the keyspace itself when no other datacenter remains.
    Returns the plan run (empty when there was nothing to do)."""
    plan = plan_keyspace_deletion(keyspace, datacenter, observe_keyspace(session, keyspace))
    run_plan(session, plan)
    return plan


__all__ = [
    "CONNECT_TIMEOUT_S",
    "REQUEST_TIMEOUT_S",
    "SCHEMA_AGREEMENT_S",
    "connect",
    "converge_keyspace",
    "delete_datacenter",
    "ensure_schema",
    "observe_keyspace",
    "run_plan",
]
