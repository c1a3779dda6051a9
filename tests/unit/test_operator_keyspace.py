"""Keyspace DDL and decisions: create if missing, ALTER as regions join, refuse to drop
a datacenter's replicas, drop only this region's part on deletion."""

from __future__ import annotations

import pytest

from tidings_operator.resources.keyspace import (
    DATACENTER_REMOVAL,
    NETWORK_TOPOLOGY,
    ObservedKeyspace,
    alter_keyspace_cql,
    create_keyspace_cql,
    plan_keyspace,
    plan_keyspace_deletion,
    replication_cql,
)

NTS = NETWORK_TOPOLOGY


def test_create_uses_network_topology_strategy_if_not_exists() -> None:
    assert create_keyspace_cql("tidings", {"us-east": 3}) == (
        "CREATE KEYSPACE IF NOT EXISTS tidings WITH replication = "
        "{'class': 'NetworkTopologyStrategy', 'us-east': 3} AND durable_writes = true"
    )


def test_replication_is_sorted_so_every_region_writes_the_same_statement() -> None:
    assert replication_cql({"us-east": 3, "eu-west": 2}) == replication_cql(
        {"eu-west": 2, "us-east": 3}
    )


@pytest.mark.parametrize(
    ("keyspace", "replication", "message"),
    [
        ("tidings; DROP KEYSPACE x", {"dc": 1}, "keyspace"),
        ("Tidings", {"dc": 1}, "keyspace"),
        ("tidings", {"dc'1": 1}, "datacenter name"),
        ("tidings", {"dc": 0}, "1..32"),
        ("tidings", {"dc": 33}, "1..32"),
        ("tidings", {}, "at least one datacenter"),
    ],
)
def test_only_valid_names_reach_the_ddl(
    keyspace: str, replication: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_keyspace_cql(keyspace, replication)


def test_a_missing_keyspace_is_created() -> None:
    plan = plan_keyspace("tidings", {"us-east": 3}, None)
    assert plan.statements == (create_keyspace_cql("tidings", {"us-east": 3}),)
    assert plan.refusals == ()


def test_an_aligned_keyspace_needs_nothing() -> None:
    observed = ObservedKeyspace(NTS, {"us-east": 3})
    assert plan_keyspace("tidings", {"us-east": 3}, observed).statements == ()


def test_a_joining_region_adds_its_datacenter() -> None:
    observed = ObservedKeyspace(NTS, {"us-east": 3})
    desired = {"us-east": 3, "eu-west": 3}
    plan = plan_keyspace("tidings", desired, observed)
    assert plan.statements == (alter_keyspace_cql("tidings", desired),)
    assert plan.statements[0].startswith("ALTER KEYSPACE tidings WITH replication = ")
    assert any("nodetool rebuild" in step and "eu-west" in step for step in plan.follow_up)


def test_more_replicas_need_a_repair() -> None:
    plan = plan_keyspace("tidings", {"us-east": 5}, ObservedKeyspace(NTS, {"us-east": 3}))
    assert len(plan.statements) == 1
    assert any("repair" in step and "us-east" in step for step in plan.follow_up)


def test_removing_a_datacenter_is_refused() -> None:
    observed = ObservedKeyspace(NTS, {"us-east": 3, "eu-west": 3})
    plan = plan_keyspace("tidings", {"us-east": 3}, observed)
    assert plan.statements == ()
    (refusal,) = plan.refusals
    assert refusal.reason == DATACENTER_REMOVAL
    assert "eu-west" in refusal.message


def test_a_simple_strategy_keyspace_is_moved_to_network_topology() -> None:
    observed = ObservedKeyspace.from_system_schema(
        {"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "1"}
    )
    assert observed.replication == {}
    plan = plan_keyspace("tidings", {"us-east": 3}, observed)
    assert plan.statements == (alter_keyspace_cql("tidings", {"us-east": 3}),)
    assert any("repair" in step for step in plan.follow_up)


def test_reading_system_schema() -> None:
    observed = ObservedKeyspace.from_system_schema(
        {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "us-east": "3"}
    )
    assert observed == ObservedKeyspace(NTS, {"us-east": 3})


def test_deleting_one_region_drops_only_its_replicas() -> None:
    observed = ObservedKeyspace(NTS, {"us-east": 3, "eu-west": 3})
    plan = plan_keyspace_deletion("tidings", "eu-west", observed)
    assert plan.statements == (alter_keyspace_cql("tidings", {"us-east": 3}),)


def test_deleting_the_last_region_drops_the_keyspace() -> None:
    plan = plan_keyspace_deletion("tidings", "us-east", ObservedKeyspace(NTS, {"us-east": 3}))
    assert plan.statements == ("DROP KEYSPACE IF EXISTS tidings",)


def test_deleting_what_is_not_there_does_nothing() -> None:
    assert plan_keyspace_deletion("tidings", "us-east", None).statements == ()
    observed = ObservedKeyspace(NTS, {"eu-west": 3})
    assert plan_keyspace_deletion("tidings", "us-east", observed).statements == ()
