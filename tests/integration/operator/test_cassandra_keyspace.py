"""The operator's Cassandra shell on the real node of ``scripts/deps``: the keyspace
created with NetworkTopologyStrategy on the node's datacenter, the platform's tables by
its own migrations, replication altered, a datacenter Cassandra does not know refused,
deletion, and a cluster that cannot be reached. Keyspaces are the test's own."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tidings.engines.cassandra_schema import MIGRATIONS
from tidings_operator.cassandra_admin import (
    connect,
    converge_keyspace,
    delete_datacenter,
    ensure_schema,
    observe_keyspace,
    run_plan,
)
from tidings_operator.external import (
    CASSANDRA_REJECTED,
    CASSANDRA_UNAVAILABLE,
    ExternalUnavailable,
)
from tidings_operator.resources.keyspace import (
    DATACENTER_REMOVAL,
    NETWORK_TOPOLOGY,
    ObservedKeyspace,
    plan_keyspace,
)

PLATFORM_TABLES = {
    "schema_migrations",
    "schema_lock",
    *(
        match
        for migration in MIGRATIONS
        for statement in migration.statements
        for match in re.findall(r"CREATE TABLE IF NOT EXISTS \{ks\}\.(\w+)", statement)
    ),
}


@pytest.fixture(scope="module")
def session(cassandra_env: dict[str, str]) -> Iterator[Any]:
    with connect(
        cassandra_env["TIDINGS_CASSANDRA_CONTACT_POINTS"].split(","),
        int(cassandra_env["TIDINGS_CASSANDRA_PORT"]),
        local_dc=cassandra_env["TIDINGS_CASSANDRA_LOCAL_DC"],
    ) as found:
        yield found


@pytest.fixture(scope="module")
def datacenter(session: Any, cassandra_env: dict[str, str]) -> str:
    """The node's datacenter, as the node itself reports it."""
    name = str(session.execute("SELECT data_center FROM system.local").one()["data_center"])
    assert name == cassandra_env["TIDINGS_CASSANDRA_LOCAL_DC"]
    return name


@pytest.fixture
def keyspace(session: Any) -> Iterator[str]:
    name = f"optest_{uuid.uuid4().hex[:16]}"
    yield name
    session.execute(f"DROP KEYSPACE IF EXISTS {name}")


def tables(session: Any, keyspace: str) -> set[str]:
    rows = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
    )
    return {row["table_name"] for row in rows}


# --------------------------------------------------------------------------- keyspace


def test_the_keyspace_is_created_with_network_topology_on_the_local_datacenter(
    session: Any, keyspace: str, datacenter: str
) -> None:
    assert observe_keyspace(session, keyspace) is None
    plan = plan_keyspace(keyspace, {datacenter: 1}, None)
    run_plan(session, plan)
    assert observe_keyspace(session, keyspace) == ObservedKeyspace(
        NETWORK_TOPOLOGY, {datacenter: 1}
    )
    # Level-based: the next reconcile has nothing to do.
    assert converge_keyspace(session, keyspace, {datacenter: 1}).statements == ()


def test_another_strategy_is_observed_as_such(session: Any) -> None:
    observed = observe_keyspace(session, "system_distributed")
    assert observed is not None
    assert observed.strategy.endswith("SimpleStrategy")
    assert observed.replication == {}


def test_ensure_schema_creates_the_platforms_tables_once(
    session: Any, keyspace: str, datacenter: str
) -> None:
    with pytest.raises(ValueError, match="run its keyspace plan first"):
        ensure_schema(session, keyspace)
    assert observe_keyspace(session, keyspace) is None  # the migrations did not create it

    converge_keyspace(session, keyspace, {datacenter: 1})
    assert ensure_schema(session, keyspace) == [m.version for m in MIGRATIONS]
    assert tables(session, keyspace) == PLATFORM_TABLES
    assert ensure_schema(session, keyspace) == []  # idempotent


async def test_ensure_schema_runs_in_a_thread_not_on_the_loop(
    session: Any, keyspace: str, datacenter: str
) -> None:
    await asyncio.to_thread(converge_keyspace, session, keyspace, {datacenter: 1})
    with pytest.raises(RuntimeError, match=r"asyncio\.to_thread"):
        ensure_schema(session, keyspace)
    applied = await asyncio.to_thread(ensure_schema, session, keyspace)
    assert applied == [m.version for m in MIGRATIONS]


def test_the_replica_count_is_altered(session: Any, keyspace: str, datacenter: str) -> None:
    converge_keyspace(session, keyspace, {datacenter: 1})
    plan = converge_keyspace(session, keyspace, {datacenter: 2})
    assert plan.statements[0].startswith(f"ALTER KEYSPACE {keyspace}")
    assert any("repair" in step for step in plan.follow_up)
    assert observe_keyspace(session, keyspace) == ObservedKeyspace(
        NETWORK_TOPOLOGY, {datacenter: 2}
    )


def test_a_datacenter_cassandra_does_not_know_is_rejected_with_its_reason(
    session: Any, keyspace: str, datacenter: str
) -> None:
    """Adding a datacenter: Cassandra (4.0+) accepts NetworkTopologyStrategy replication
    only for datacenters that have nodes, so with the one-datacenter fixture the ALTER
    that adds one is refused by Cassandra, and the keyspace stays as it was."""
    converge_keyspace(session, keyspace, {datacenter: 1})
    plan = plan_keyspace(
        keyspace, {datacenter: 1, "nowhere": 1}, observe_keyspace(session, keyspace)
    )
    assert any("nodetool rebuild" in step for step in plan.follow_up)
    with pytest.raises(ExternalUnavailable) as caught:
        run_plan(session, plan)
    assert caught.value.reason == CASSANDRA_REJECTED
    assert "nowhere" in str(caught.value)
    assert "spec.cassandra" in str(caught.value)
    assert observe_keyspace(session, keyspace) == ObservedKeyspace(
        NETWORK_TOPOLOGY, {datacenter: 1}
    )


def test_dropping_a_datacenter_is_refused_and_nothing_runs(
    session: Any, keyspace: str, datacenter: str
) -> None:
    converge_keyspace(session, keyspace, {datacenter: 2})
    plan = converge_keyspace(session, keyspace, {"elsewhere": 1})
    assert [r.reason for r in plan.refusals] == [DATACENTER_REMOVAL]
    assert plan.statements == ()
    assert observe_keyspace(session, keyspace) == ObservedKeyspace(
        NETWORK_TOPOLOGY, {datacenter: 2}
    )


# --------------------------------------------------------------------------- deletion


def test_deleting_the_last_datacenter_drops_the_keyspace(
    session: Any, keyspace: str, datacenter: str
) -> None:
    converge_keyspace(session, keyspace, {datacenter: 1})
    session.execute(f"CREATE TABLE {keyspace}.data (id int PRIMARY KEY)")

    plan = delete_datacenter(session, keyspace, datacenter)
    assert plan.statements == (f"DROP KEYSPACE IF EXISTS {keyspace}",)
    assert observe_keyspace(session, keyspace) is None
    assert tables(session, keyspace) == set()
    # Again (a retried finalizer): nothing left to do.
    assert delete_datacenter(session, keyspace, datacenter).statements == ()


def test_deleting_a_region_whose_datacenter_is_not_in_the_keyspace_keeps_it(
    session: Any, keyspace: str, datacenter: str
) -> None:
    converge_keyspace(session, keyspace, {datacenter: 1})
    assert delete_datacenter(session, keyspace, "elsewhere").statements == ()
    assert observe_keyspace(session, keyspace) == ObservedKeyspace(
        NETWORK_TOPOLOGY, {datacenter: 1}
    )


# --------------------------------------------------------------------------- unreachable


def free_port() -> int:
    """A loopback port nobody listens on (bound a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(60)
def test_an_unreachable_cluster_raises_one_clear_error() -> None:
    port = free_port()
    with pytest.raises(ExternalUnavailable) as caught, connect(["127.0.0.1"], port):
        pytest.fail("connected to a port nobody listens on")
    assert caught.value.reason == CASSANDRA_UNAVAILABLE
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "spec.cassandra.contactPoints" in message
