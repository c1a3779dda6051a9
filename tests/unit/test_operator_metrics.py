"""The operator's per-resource gauges follow their resources: the lag gauge has one
series per resource, under its current owner region (the alert rules sum it per
region), the refusals gauge one per resource and reason; both go with the resource."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tidings_operator import metrics

LAG = "tidings_operator_consumer_lag"


def lag(name: str, region: str) -> float | None:
    return REGISTRY.get_sample_value(
        LAG, {"kind": "MessageShard", "namespace": "ns-metrics", "name": name, "region": region}
    )


def test_a_moved_shard_is_exported_under_its_new_owner_only() -> None:
    metrics.set_consumer_lag("MessageShard", "ns-metrics", "east-0", "east", 7)
    assert lag("east-0", "east") == 7
    metrics.set_consumer_lag("MessageShard", "ns-metrics", "east-0", "west", 9)
    assert (lag("east-0", "east"), lag("east-0", "west")) == (None, 9)


def test_a_forgotten_resource_leaves_no_series() -> None:
    metrics.set_consumer_lag("MessageShard", "ns-metrics", "east-1", "east", 3)
    metrics.forget_consumer_lag("MessageShard", "ns-metrics", "east-1")
    assert lag("east-1", "east") is None
    metrics.forget_consumer_lag("MessageShard", "ns-metrics", "east-1")  # twice: a no-op


REFUSALS = "tidings_operator_refusals"


def refused(name: str, reason: str) -> float | None:
    labels = {"kind": "ChatRegion", "namespace": "ns-metrics", "name": name, "reason": reason}
    return REGISTRY.get_sample_value(REFUSALS, labels)


def test_refusals_are_counted_per_reason_and_a_resolved_reason_goes() -> None:
    shrink, removal = "PartitionsCannotShrink", "DatacenterRemovalRefused"
    metrics.set_refusals("ChatRegion", "ns-metrics", "east", [shrink, shrink, removal])
    assert (refused("east", shrink), refused("east", removal)) == (2, 1)
    metrics.set_refusals("ChatRegion", "ns-metrics", "east", [shrink])
    assert (refused("east", shrink), refused("east", removal)) == (1, None)
    metrics.set_refusals("ChatRegion", "ns-metrics", "west", [removal])  # another region
    metrics.set_refusals("ChatRegion", "ns-metrics", "east", [])
    assert (refused("east", shrink), refused("west", removal)) == (None, 1)


def test_a_forgotten_resource_leaves_no_refusal() -> None:
    metrics.set_refusals("ChatRegion", "ns-metrics", "gone", ["PartitionsCannotShrink"])
    metrics.forget_resource("ChatRegion", "ns-metrics", "gone")
    assert refused("gone", "PartitionsCannotShrink") is None
