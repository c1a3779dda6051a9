"""The operator's lag gauge follows its resources: one series per resource, under its
current owner region, gone with the resource (the alert rules sum it per region)."""

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
