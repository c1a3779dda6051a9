"""Failover decisions: peer health over time, and which shards move where."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings_operator.failover import (
    Health,
    Heartbeat,
    MoveRefused,
    PeerObservation,
    PeerVerdict,
    ShardView,
    judge_peer,
    plan_failback,
    plan_failover,
    plan_takeover,
)
from tidings_operator.models import ChatRegion
from tidings_operator.resources.heartbeat import heartbeat_lease, micro_time, read_heartbeat
from tidings_operator.status import (
    Observation,
    peers_condition,
    previous_verdicts,
    region_status,
    summarize,
)

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
WINDOW = 30


def beat(renewed: datetime, seconds: int = 15) -> Heartbeat:
    return Heartbeat(renewed=renewed, duration_seconds=seconds)


def run(observations: list[tuple[datetime, PeerObservation]]) -> list[PeerVerdict]:
    """Judge a peer through a series of observations, as successive reconciles do."""
    verdicts: list[PeerVerdict] = []
    for now, seen in observations:
        verdicts.append(judge_peer(seen, verdicts[-1] if verdicts else None, now, WINDOW))
    return verdicts


def test_a_current_heartbeat_is_healthy() -> None:
    (verdict,) = run([(T0, PeerObservation("eu", beat(T0 - timedelta(seconds=3))))])
    assert (verdict.health, verdict.reason) == (Health.HEALTHY, "HeartbeatCurrent")


def test_a_peer_never_seen_is_unknown_not_failed() -> None:
    verdicts = run([(T0 + timedelta(minutes=m), PeerObservation("eu", None)) for m in range(10)])
    assert {v.health for v in verdicts} == {Health.UNKNOWN}
    assert "tidings-region-eu" in verdicts[-1].message


def test_an_expired_heartbeat_is_suspect_then_failed_after_the_window() -> None:
    last = beat(T0)  # renewed at T0, holds 15 s
    verdicts = run(
        [
            (T0 + timedelta(seconds=10), PeerObservation("eu", last)),
            (T0 + timedelta(seconds=20), PeerObservation("eu", last)),
            (T0 + timedelta(seconds=35), PeerObservation("eu", last)),
            (T0 + timedelta(seconds=50), PeerObservation("eu", last)),
            (T0 + timedelta(seconds=51), PeerObservation("eu", last)),
        ]
    )
    assert [v.health for v in verdicts] == [
        Health.HEALTHY,
        Health.SUSPECT,
        Health.SUSPECT,
        Health.FAILED,
        Health.FAILED,
    ]
    suspect_since = T0 + timedelta(seconds=20)
    assert verdicts[1].since == suspect_since
    assert verdicts[3].since == suspect_since  # one run of failed checks
    assert verdicts[3].reason == "HeartbeatExpired"
    assert "window 30s" in verdicts[3].message


def test_a_peer_that_recovers_within_the_window_starts_over() -> None:
    verdicts = run(
        [
            (T0 + timedelta(seconds=20), PeerObservation("eu", beat(T0))),
            (T0 + timedelta(seconds=25), PeerObservation("eu", beat(T0 + timedelta(seconds=24)))),
            (T0 + timedelta(seconds=60), PeerObservation("eu", beat(T0 + timedelta(seconds=24)))),
        ]
    )
    assert [v.health for v in verdicts] == [Health.SUSPECT, Health.HEALTHY, Health.SUSPECT]
    assert verdicts[2].since == T0 + timedelta(seconds=60)


def test_a_failing_gateway_probe_fails_a_peer_with_a_fresh_heartbeat() -> None:
    times = [T0, T0 + timedelta(seconds=31)]
    verdicts = run(
        [(t, PeerObservation("eu", beat(t), probe_error="connection refused")) for t in times]
    )
    assert [v.health for v in verdicts] == [Health.SUSPECT, Health.FAILED]
    assert verdicts[-1].reason == "GatewayUnreachable"
    assert "connection refused" in verdicts[-1].message


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
    assert read_heartbeat(lease) == beat(T0)
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


def test_region_status_keeps_peer_verdicts_while_they_are_not_judged() -> None:
    summary = summarize(Observation(generation=3, workloads={}), [], T0)
    verdict = PeerVerdict("eu", Health.SUSPECT, T0, "HeartbeatExpired", "expired")
    judged = region_status(region(), summary, peers=[verdict], now=T0)
    assert [(p.name, p.health) for p in judged.peers] == [("eu", "Suspect")]
    assert "PeersHealthy" in {c.type for c in judged.conditions}
    stored = region().model_copy(update={"status": judged})
    assert previous_verdicts(stored) == {"eu": verdict}
    kept = region_status(stored, summary, peers=None)  # paused: not looked at
    assert kept.peers == judged.peers
    assert "PeersHealthy" in {c.type for c in kept.conditions}
