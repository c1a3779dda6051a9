"""Failover decisions: which shards move where, and the failover status block."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings_operator.failover import (
    Health,
    Heartbeat,
    MoveRefused,
    PeerVerdict,
    ShardView,
    plan_failback,
    plan_failover,
    plan_takeover,
)
from tidings_operator.failover_status import failover_status, peers_condition, previous_verdicts
from tidings_operator.models import ChatRegion
from tidings_operator.quorum import Action, Decision
from tidings_operator.resources.heartbeat import heartbeat_lease, micro_time, read_heartbeat
from tidings_operator.status import Observation, region_status, summarize

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
WINDOW = 30


def shard(name: str, home: str, index: int, owner: str | None = None, epoch: int = 1) -> ShardView:
    return ShardView(name, home, index, owner or home, epoch, f"rv-{name}")


SHARDS = [shard(f"us-{i}", "us", i) for i in range(4)]
SHARDS += [shard(f"eu-{i}", "eu", i) for i in range(4)]


def test_the_only_peer_takes_every_shard_of_the_failed_region_with_a_bumped_epoch() -> None:
    moves = plan_takeover("eu", "us", [], SHARDS)
    assert [(m.shard, m.from_owner, m.to_owner, m.epoch) for m in moves] == [
        (f"eu-{i}", "eu", "us", 2) for i in range(4)
    ]
    assert moves[0].resource_version == "rv-eu-0"  # the update is conditional on it


def test_healthy_peers_split_the_shards_and_each_makes_only_its_own_moves() -> None:
    mine = plan_takeover("eu", "us", ["ap"], SHARDS)
    theirs = plan_takeover("eu", "ap", ["us"], SHARDS)
    assert [m.shard for m in mine] == ["eu-1", "eu-3"]
    assert [m.shard for m in theirs] == ["eu-0", "eu-2"]


def test_a_failed_peer_is_no_taker() -> None:
    moves = plan_takeover("eu", "us", ["eu"], SHARDS)
    assert {m.to_owner for m in moves} == {"us"}
    assert len(moves) == 4


def test_shards_already_moved_are_not_moved_again() -> None:
    moved = [shard("eu-0", "eu", 0, owner="us", epoch=2), *SHARDS[5:]]
    assert [m.shard for m in plan_takeover("eu", "us", [], moved)] == ["eu-1", "eu-2", "eu-3"]


@given(
    st.lists(st.sampled_from(["us", "eu", "ap", "sa"]), min_size=1, max_size=40),
    st.sets(st.sampled_from(["us", "ap", "sa"]), min_size=1),
)
def test_every_shard_of_a_failed_region_gets_exactly_one_taker(
    owners: list[str], takers: set[str]
) -> None:
    shards = [shard(f"s{i}", "eu", i, owner=o) for i, o in enumerate(owners)]
    planned = [
        m for acting in takers for m in plan_takeover("eu", acting, takers - {acting}, shards)
    ]
    assert sorted(m.shard for m in planned) == sorted(s.name for s in shards if s.owner == "eu")
    assert all(m.epoch == 2 and m.to_owner in takers for m in planned)


def test_a_manual_failover_moves_what_the_region_owns_now() -> None:
    shards = [*SHARDS[:3], shard("us-3", "us", 3, owner="eu", epoch=4), *SHARDS[4:]]
    moves = plan_failover("eu", "us", ["us", "eu"], shards)
    assert [(m.shard, m.epoch) for m in moves] == [
        *((f"eu-{i}", 2) for i in range(4)),
        ("us-3", 5),  # taken over earlier, and owned by eu now
    ]


@pytest.mark.parametrize(
    ("region", "to", "message"),
    [
        ("eu", "mars", "no ChatRegion mars"),
        ("mars", "us", "no ChatRegion mars"),
        ("eu", "eu", "cannot fail over to itself"),
    ],
)
def test_a_manual_failover_refuses_what_makes_no_sense(region: str, to: str, message: str) -> None:
    with pytest.raises(MoveRefused, match=message):
        plan_failover(region, to, ["us", "eu"], SHARDS)


def test_a_failover_of_a_region_that_owns_nothing_is_refused() -> None:
    moved = [shard(s.name, s.home, s.index, owner="us") for s in SHARDS]
    with pytest.raises(MoveRefused, match="owns no shards"):
        plan_failover("eu", "us", ["us", "eu"], moved)


def test_failback_brings_home_only_the_regions_own_shards() -> None:
    shards = [
        shard("eu-0", "eu", 0, owner="us", epoch=2),
        shard("eu-1", "eu", 1, owner="ap", epoch=5),
        shard("eu-2", "eu", 2),
        shard("us-0", "us", 0, owner="eu", epoch=2),
    ]
    moves = plan_failback("eu", ["us", "eu", "ap"], shards)
    assert [(m.shard, m.from_owner, m.to_owner, m.epoch) for m in moves] == [
        ("eu-0", "us", "eu", 3),
        ("eu-1", "ap", "eu", 6),
    ]


def region(**spec: object) -> ChatRegion:
    return ChatRegion.model_validate(
        {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "ChatRegion",
            "metadata": {"name": "us", "namespace": "ns", "uid": "u-1", "generation": 3},
            "spec": {
                "image": "tidings:1",
                "kafka": {"bootstrapServers": "k:9092"},
                "cassandra": {"contactPoints": ["c"], "replication": {"us": 1}},
                "redis": {"url": "redis://r:6379/0"},
                "s3": {"bucket": "media"},
                **spec,
            },
        }
    )


def test_the_heartbeat_lease_is_owned_by_its_region_and_read_back() -> None:
    lease = heartbeat_lease(region(), holder="op-1", now=T0, duration_seconds=15)
    assert lease["metadata"]["name"] == "tidings-region-us"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert lease["spec"] == {
        "holderIdentity": "op-1",
        "leaseDurationSeconds": 15,
        "renewTime": "2026-11-25T12:00:00.000000Z",
    }
    assert read_heartbeat(lease) == Heartbeat(T0, 15)
    assert read_heartbeat(None) is None
    assert read_heartbeat({"spec": {"holderIdentity": "x"}}) is None
    assert micro_time(T0 + timedelta(microseconds=5)).endswith(".000005Z")


def test_peers_condition_names_the_first_unwell_peer() -> None:
    healthy = PeerVerdict("eu", Health.HEALTHY, T0, "HeartbeatCurrent", "heartbeat current")
    failed = PeerVerdict("ap", Health.FAILED, T0, "HeartbeatExpired", "failing for 40s")
    assert peers_condition([], 1, T0) is None
    ok = peers_condition([healthy], 1, T0)
    assert ok is not None
    assert (ok.status, ok.reason) == ("True", "AllPeersHealthy")
    bad = peers_condition([healthy, failed], 1, T0)
    assert bad is not None
    assert (bad.status, bad.reason) == ("False", "PeerFailed")
    assert bad.message == "ap: failing for 40s"


def test_the_failover_block_is_its_own_and_the_reconcile_keeps_its_condition() -> None:
    verdict = PeerVerdict("eu", Health.SUSPECT, T0, "DataPlaneUnreachable", "down", 1, 2)
    decision = Decision(Action.NONE, "NoFailure", "no peer failed")
    patch = failover_status(region(peers=[{"name": "eu"}]), [verdict], decision, T0)
    assert patch["failover"]["regions"] == 2
    assert patch["failover"]["majority"] == 2
    assert patch["failover"]["peers"][0]["votes"] == 1
    assert patch["failover"]["decision"]["reason"] == "NoFailure"
    assert [c["type"] for c in patch["conditions"]] == ["PeersHealthy"]
    stored = region(peers=[{"name": "eu"}]).model_validate(
        {**region(peers=[{"name": "eu"}]).model_dump(by_alias=True), "status": patch}
    )
    assert previous_verdicts(stored) == {"eu": verdict}
    # The region's reconcile writes everything else, keeps PeersHealthy, leaves the block.
    summary = summarize(Observation(generation=3, workloads={}), [], T0)
    rebuilt = region_status(stored, summary)
    assert rebuilt.failover is None
    assert "PeersHealthy" in {c.type for c in rebuilt.conditions}
    # The decision's time holds while the decision does.
    later = failover_status(stored, [verdict], decision, T0 + timedelta(minutes=5))
    assert later["failover"]["decision"]["time"] == patch["failover"]["decision"]["time"]


def test_takers_agree_on_the_split_whoever_acts_first() -> None:
    first = plan_takeover("eu", "ap", ["us"], SHARDS)
    moved = {m.shard for m in first}
    after = [
        shard(s.name, s.home, s.index, owner="ap", epoch=2) if s.name in moved else s
        for s in SHARDS
    ]
    second = plan_takeover("eu", "us", ["ap"], after)
    assert {m.shard for m in second} == {m.shard for m in plan_takeover("eu", "us", ["ap"], SHARDS)}
    assert moved.isdisjoint(m.shard for m in second)
