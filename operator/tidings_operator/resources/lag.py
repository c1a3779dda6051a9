"""Consumer lag in, status numbers and PushPool replicas out.

``kafka_admin.group_lag`` measures one consumer group on one topic per partition; the
functions here say which (group, topic) pairs to measure and what the numbers mean.

**A MessageShard's lag is its owner's delivery lag on every partition.** The router
keys each record by its recipient's user id and Kafka's default partitioner places it
by murmur2 of that key, while a user's slot (what a shard is made of) is sha256 of the
same id (``tidings.core.shardmap.slot_for``). The two hashes are independent, so every
partition carries records of every shard and no partition belongs to one shard: the
partitions a shard's slots hash to are all of them. Telling one shard's records from
another's would mean reading the records. So a shard reports the lag of its owner's
``delivery`` group on ``tidings.<owner>.deliveries`` plus its ``receipts`` group on
``tidings.<owner>.receipts`` (receipts are delivered to recipients too), over every
partition: an upper bound of the shard's own backlog, and exactly 0 when none of its
recipients' records wait, which is what a failover needs to know. Shards with the same
owner report the same number. (An apportioned estimate by slot share was rejected: it
looks measured but is not, and can round a waiting record down to 0.)

**A PushPool's replicas follow the HPA's rule for an AverageValue target**: the pool's
group lag on ``tidings.<region>.push`` divided by ``lagPerReplica``, rounded up,
within ``minReplicas..maxReplicas``, kept as it is while within 10% of the target (the
HPA's default tolerance). Scale-down stabilization over time is the caller's: this is
a pure function of one observation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from tidings.core.shardmap import consumer_group, deliveries_topic, push_topic, receipts_topic
from tidings_operator.models import MessageShard, PushPool
from tidings_operator.resources.pushpool import pool_consumer_group

TOLERANCE = 0.1
"""Relative distance from the target within which the replica count stays (the HPA's
``--horizontal-pod-autoscaler-tolerance`` default)."""


@dataclass(frozen=True)
class LagSource:
    """A consumer group and the topic it reads: one ``group_lag`` call."""

    group: str
    topic: str


def shard_lag_sources(shard: MessageShard) -> tuple[LagSource, ...]:
    """What a shard's lag is measured on: its owner's delivery and receipts groups (the
    owner serves the shard now, so records for it are produced to the owner's topics)."""
    owner = shard.spec.owner
    return (
        LagSource(consumer_group(owner, "delivery"), deliveries_topic(owner)),
        LagSource(consumer_group(owner, "receipts"), receipts_topic(owner)),
    )


def shard_partitions(shard: MessageShard, partitions: int) -> range:
    """The partitions of a ``partitions``-partition topic that hold the shard's records:
    all of them (the module docstring says why)."""
    if partitions < 0:
        raise ValueError(f"a topic cannot have {partitions} partitions")
    return range(partitions)


def total_lag(per_partition: Mapping[int, int], partitions: Iterable[int] | None = None) -> int:
    """The lag summed over ``partitions`` (default: every partition measured)."""
    chosen = per_partition.keys() if partitions is None else partitions
    return sum(max(0, per_partition.get(p, 0)) for p in chosen)


def shard_lag(shard: MessageShard, measured: Iterable[Mapping[int, int]]) -> int:
    """``status.consumerLag`` of a shard from the per-partition lag of each of its
    ``shard_lag_sources`` (in any order)."""
    return sum(total_lag(lag, shard_partitions(shard, len(lag))) for lag in measured)


def pool_lag_source(pool: PushPool) -> LagSource:
    """The pool's own consumer group on its region's push topic."""
    region = pool.spec.region
    return LagSource(pool_consumer_group(region, pool.spec.provider), push_topic(region))


def pool_replicas(pool: PushPool, lag: int, current: int | None = None) -> int:
    """The worker count for a push-topic lag of ``lag``; ``current``: the count running
    now (default ``spec.replicas``). Without ``autoscaling``: ``spec.replicas``."""
    spec = pool.spec
    scaling = spec.autoscaling
    if scaling is None:
        return spec.replicas
    lag = max(0, lag)
    now = spec.replicas if current is None else current
    if scaling.min_replicas <= now <= scaling.max_replicas and now > 0:
        ratio = lag / (now * scaling.lag_per_replica)
        if abs(ratio - 1.0) <= TOLERANCE:
            return now
    wanted = math.ceil(lag / scaling.lag_per_replica)
    return min(scaling.max_replicas, max(scaling.min_replicas, wanted))


__all__ = [
    "TOLERANCE",
    "LagSource",
    "pool_lag_source",
    "pool_replicas",
    "shard_lag",
    "shard_lag_sources",
    "shard_partitions",
    "total_lag",
]


def waiting_age_s(oldest_ms: int | None, now: datetime) -> float:
    """Seconds the oldest waiting record has waited at ``now`` (0 when none waits; never
    negative, whatever the producer's clock said)."""
    if oldest_ms is None:
        return 0.0
    return max(0.0, now.timestamp() - oldest_ms / 1000)
