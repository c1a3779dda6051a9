"""Consumer lag into status and PushPool replicas: which groups and topics are measured,
why a shard's lag spans every partition, and the replica rule (the HPA's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from tidings.core.offsets import consumer_lag
from tidings.core.shardmap import slot_for
from tidings_operator.models import MessageShard, PushPool, parse
from tidings_operator.resources.lag import (
    LagSource,
    pool_lag_source,
    pool_replicas,
    shard_lag,
    shard_lag_sources,
    shard_partitions,
    total_lag,
    waiting_age_s,
)


def shard(owner: str = "us-east", first: int = 0, last: int = 127) -> MessageShard:
    found = parse(
        {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "MessageShard",
            "metadata": {"name": "us-east-0"},
            "spec": {
                "region": "us-east",
                "index": 0,
                "firstSlot": first,
                "lastSlot": last,
                "owner": owner,
                "epoch": 2 if owner != "us-east" else 1,
            },
        }
    )
    assert isinstance(found, MessageShard)
    return found


def pool(provider: str = "fcm", **spec: Any) -> PushPool:
    found = parse(
        {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "PushPool",
            "metadata": {"name": f"us-east-{provider}"},
            "spec": {
                "region": "us-east",
                "provider": provider,
                "credentialsSecret": {"name": "creds", "key": "key"},
                **(
                    {"apns": {"keyId": "K", "teamId": "T", "topic": "app"}}
                    if provider == "apns"
                    else {}
                ),
                **spec,
            },
        }
    )
    assert isinstance(found, PushPool)
    return found


def scaled(min_replicas: int = 1, max_replicas: int = 8, per: int = 100) -> PushPool:
    return pool(
        autoscaling={
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "lagPerReplica": per,
        }
    )


# --------------------------------------------------------------------------- the lag rule


def test_lag_counts_from_the_commit_or_else_from_the_log_start() -> None:
    lag = consumer_lag(
        beginning={0: 0, 1: 40, 2: 0, 3: 10},
        end={0: 100, 1: 50, 2: 7, 3: 10},
        committed={0: 60, 2: -1, 3: 10},
    )
    # 0: committed 60 of 100; 1: never committed, log starts at 40; 2: -1 = no commit;
    # 3: fully consumed.
    assert lag == {0: 40, 1: 10, 2: 7, 3: 0}


def test_a_commit_below_the_log_start_counts_from_the_log_start() -> None:
    # Retention removed offsets 0..79 after the group committed 20.
    assert consumer_lag({0: 80}, {0: 100}, {0: 20}) == {0: 20}


@given(
    st.dictionaries(
        st.integers(0, 15),
        st.tuples(st.integers(0, 1000), st.integers(0, 1000), st.integers(-1, 1200)),
    )
)
def test_lag_is_never_negative_nor_above_the_log(parts: dict[int, tuple[int, int, int]]) -> None:
    beginning = {p: min(a, b) for p, (a, b, _) in parts.items()}
    end = {p: max(a, b) for p, (a, b, _) in parts.items()}
    committed = {p: c for p, (_, _, c) in parts.items()}
    lag = consumer_lag(beginning, end, committed)
    assert lag.keys() == end.keys()
    for p, value in lag.items():
        assert 0 <= value <= end[p] - beginning[p]


def test_total_lag_sums_the_chosen_partitions() -> None:
    lag = {0: 5, 1: 0, 2: 7}
    assert total_lag(lag) == 12
    assert total_lag(lag, [0, 2, 9]) == 12  # a partition not measured has no lag
    assert total_lag({}) == 0


# --------------------------------------------------------------------------- MessageShard


def test_a_shard_is_measured_on_its_owners_delivery_and_receipts_groups() -> None:
    assert shard_lag_sources(shard()) == (
        LagSource("tidings.us-east.delivery", "tidings.us-east.deliveries"),
        LagSource("tidings.us-east.receipts", "tidings.us-east.receipts"),
    )
    # After a failover the peer serves the shard: records go to the peer's topics.
    (deliveries, _) = shard_lag_sources(shard(owner="eu-west"))
    assert deliveries == LagSource("tidings.eu-west.delivery", "tidings.eu-west.deliveries")


def test_one_shards_recipients_land_on_every_kafka_partition() -> None:
    """Why a shard's lag spans every partition: the router keys records by recipient
    and Kafka places them by murmur2 of the key, independent of the sha256 slot."""
    partitions = list(range(8))
    the_shard = shard(first=0, last=127)  # 1/8 of the slots
    users = [f"user-{i}" for i in range(4000)]
    mine = [u for u in users if the_shard.as_core_shard().covers(slot_for(u))]
    assert len(mine) > 300
    partitioner = DefaultPartitioner()  # what the platform's producer uses
    landed = {partitioner(u.encode(), partitions, partitions) for u in mine}
    assert landed == set(partitions)
    assert list(shard_partitions(the_shard, 8)) == partitions


def test_shard_lag_is_the_owners_lag_over_every_partition() -> None:
    deliveries = {0: 3, 1: 0, 2: 5, 3: 1}
    receipts = {0: 0, 1: 2, 2: 0, 3: 0}
    assert shard_lag(shard(), [deliveries, receipts]) == 11
    assert shard_lag(shard(), [{}, {}]) == 0  # topics not created yet


def test_shard_partitions_refuse_a_negative_count() -> None:
    with pytest.raises(ValueError, match="partitions"):
        shard_partitions(shard(), -1)


# --------------------------------------------------------------------------- PushPool


@pytest.mark.parametrize("provider", ["fcm", "apns"])
def test_a_pool_is_measured_on_its_own_group_on_the_push_topic(provider: str) -> None:
    assert pool_lag_source(pool(provider)) == LagSource(
        f"tidings.us-east.push-{provider}", "tidings.us-east.push"
    )


def test_without_autoscaling_the_spec_replicas_stand() -> None:
    assert pool_replicas(pool(replicas=3), lag=1_000_000) == 3
    assert pool_replicas(pool(replicas=0), lag=0) == 0


@pytest.mark.parametrize(
    ("lag", "replicas"),
    [
        (0, 1),  # never below minReplicas
        (1, 1),
        (100, 1),
        (120, 2),  # rounded up: 1.2 workers' worth of lag needs two
        (450, 5),
        (800, 8),
        (10_000, 8),  # never above maxReplicas
    ],
)
def test_replicas_follow_lag_per_replica_within_bounds(lag: int, replicas: int) -> None:
    assert pool_replicas(scaled(1, 8, 100), lag, current=1) == replicas


def test_within_ten_percent_of_the_target_the_count_stays() -> None:
    pool_ = scaled(1, 8, 100)
    assert pool_replicas(pool_, 410, current=4) == 4  # 5 by the formula, 2.5% off
    assert pool_replicas(pool_, 360, current=4) == 4  # 10% under
    assert pool_replicas(pool_, 350, current=4) == 4  # ceil(3.5) = 4 anyway
    assert pool_replicas(pool_, 290, current=4) == 3  # 27.5% under: scale down
    assert pool_replicas(pool_, 450, current=4) == 5  # 12.5% over: scale up


def test_a_current_count_outside_the_bounds_is_brought_inside() -> None:
    pool_ = scaled(2, 4, 100)
    assert pool_replicas(pool_, 1000, current=10) == 4
    assert pool_replicas(pool_, 0, current=0) == 2
    assert pool_replicas(pool_, -5, current=3) == 2  # a negative lag reads as none


@given(st.integers(0, 10**7), st.integers(0, 20), st.integers(1, 5), st.integers(0, 10))
def test_replicas_always_lie_within_the_bounds(
    lag: int, current: int, low: int, extra: int
) -> None:
    replicas = pool_replicas(scaled(low, low + extra, 250), lag, current=current)
    assert low <= replicas <= low + extra


def test_the_oldest_waiting_age_counts_from_its_kafka_timestamp() -> None:
    now = datetime(2026, 12, 6, 12, 0, 30, tzinfo=UTC)
    accepted_ms = int(datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC).timestamp() * 1000)
    assert waiting_age_s(accepted_ms, now) == 30.0
    assert waiting_age_s(None, now) == 0.0  # nothing waits
    assert waiting_age_s(accepted_ms + 60_000, now) == 0.0  # a producer clock ahead of ours
