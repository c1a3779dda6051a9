"""Topic decisions by Strimzi's rules: create, adopt, grow, refuse a shrink or a new
replication factor, set the configs the spec names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tidings_operator.models import ChatRegion, parse
from tidings_operator.resources.topics import (
    PARTITIONS_CANNOT_SHRINK,
    REPLICATION_FACTOR_CHANGE,
    ObservedTopic,
    TopicSpec,
    decide_topic,
    region_topics,
)
from tidings_operator.status import Observation, summarize

NOW = datetime(2025, 1, 1, tzinfo=UTC)
DESIRED = TopicSpec("tidings.us-east.deliveries", 24, 3, {"min.insync.replicas": "2"})


def region(**kafka: Any) -> ChatRegion:
    found = parse(
        {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "ChatRegion",
            "metadata": {"name": "us-east"},
            "spec": {
                "image": "tidings:1",
                "kafka": {"bootstrapServers": "k:9092", **kafka},
                "cassandra": {"contactPoints": ["c"]},
                "redis": {"url": "redis://r"},
                "s3": {"bucket": "media"},
            },
        }
    )
    assert isinstance(found, ChatRegion)
    return found


def test_region_topics_are_the_platforms() -> None:
    topics = region_topics(region(partitions=16, replicationFactor=3))
    assert [t.name for t in topics] == [
        "tidings.us-east.deliveries",
        "tidings.us-east.receipts",
        "tidings.us-east.push",
        "tidings.us-east.analytics",
    ]
    assert {(t.partitions, t.replication_factor) for t in topics} == {(16, 3)}


def test_min_insync_replicas_defaults_to_two_with_three_replicas() -> None:
    (topic, *_) = region_topics(region(replicationFactor=3))
    assert topic.configs == {"min.insync.replicas": "2"}
    (single, *_) = region_topics(region(replicationFactor=1))
    assert single.configs == {}
    (custom, *_) = region_topics(
        region(replicationFactor=5, topicConfig={"min.insync.replicas": "3", "retention.ms": "1"})
    )
    assert custom.configs == {"min.insync.replicas": "3", "retention.ms": "1"}


def test_a_missing_topic_is_created() -> None:
    decision = decide_topic(DESIRED, None)
    assert decision.create == DESIRED
    assert decision.ready
    assert decision.changes
    assert "create topic tidings.us-east.deliveries (24 partitions" in decision.describe()


def test_an_existing_topic_is_adopted_as_is() -> None:
    decision = decide_topic(DESIRED, ObservedTopic(24, 3, {"min.insync.replicas": "2"}))
    assert decision.create is None
    assert decision.ready
    assert not decision.changes
    assert decision.describe().endswith("up to date")


def test_partitions_grow() -> None:
    decision = decide_topic(DESIRED, ObservedTopic(8, 3, {"min.insync.replicas": "2"}))
    assert decision.grow_to == 24
    assert decision.ready
    assert "grow to 24 partitions" in decision.describe()


def test_a_shrink_is_refused_with_a_reason() -> None:
    decision = decide_topic(DESIRED, ObservedTopic(32, 3, {"min.insync.replicas": "2"}))
    assert decision.grow_to is None
    assert not decision.ready
    (refusal,) = decision.refusals
    assert refusal.reason == PARTITIONS_CANNOT_SHRINK
    assert "32" in refusal.message


def test_a_replication_factor_change_is_refused() -> None:
    decision = decide_topic(DESIRED, ObservedTopic(24, 1, {"min.insync.replicas": "2"}))
    (refusal,) = decision.refusals
    assert refusal.reason == REPLICATION_FACTOR_CHANGE
    assert not decision.changes


def test_a_refusal_does_not_stop_the_safe_parts() -> None:
    decision = decide_topic(DESIRED, ObservedTopic(8, 1, {}))
    assert decision.grow_to == 24
    assert decision.set_configs == {"min.insync.replicas": "2"}
    assert [r.reason for r in decision.refusals] == [REPLICATION_FACTOR_CHANGE]


def test_only_configs_named_in_the_spec_are_set() -> None:
    observed = ObservedTopic(24, 3, {"min.insync.replicas": "1", "cleanup.policy": "compact"})
    decision = decide_topic(DESIRED, observed)
    assert decision.set_configs == {"min.insync.replicas": "2"}


def test_a_refused_shrink_makes_the_region_not_ready() -> None:
    decision = decide_topic(DESIRED, ObservedTopic(32, 3, {"min.insync.replicas": "2"}))
    summary = summarize(
        Observation(generation=2, workloads={}, refusals=decision.refusals), [], NOW
    )
    ready = next(c for c in summary.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", PARTITIONS_CANNOT_SHRINK)
    assert summary.phase == "Conflict"


@given(
    desired=st.integers(1, 1024),
    observed=st.one_of(st.none(), st.integers(1, 1024)),
    desired_rf=st.integers(1, 7),
    observed_rf=st.integers(1, 7),
)
def test_partitions_never_shrink(
    desired: int, observed: int | None, desired_rf: int, observed_rf: int
) -> None:
    spec = TopicSpec("t", desired, desired_rf)
    decision = decide_topic(
        spec, None if observed is None else ObservedTopic(observed, observed_rf)
    )
    reasons = {r.reason for r in decision.refusals}
    if observed is None:
        assert decision.create == spec
        assert not reasons
        return
    assert decision.create is None  # an existing topic is never recreated
    if decision.grow_to is not None:
        assert decision.grow_to == desired > observed
    assert (decision.grow_to is not None) == (desired > observed)
    assert (PARTITIONS_CANNOT_SHRINK in reasons) == (desired < observed)
    assert (REPLICATION_FACTOR_CHANGE in reasons) == (desired_rf != observed_rf)
    # After applying the decision the topic has max(desired, observed) partitions.
    assert max(observed, decision.grow_to or 0) == max(desired, observed)
