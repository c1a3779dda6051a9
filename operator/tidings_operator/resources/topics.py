"""A region's Kafka topics and what to do about each, by Strimzi's topic-operator rules.

Kubernetes is the source of truth: a missing topic is created; an existing one is
adopted (whoever created it); partitions only grow; a shrink or a new replication
factor is refused with a reason instead of attempted; topic configs named in the spec
are set, others left alone. A refusal does not stop the safe parts of the same
decision (level-based: converge what can be converged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tidings.core.shardmap import region_topics as platform_topics
from tidings_operator.models import ChatRegion
from tidings_operator.models.chatregion import KafkaSpec
from tidings_operator.resources.refusal import Refusal

PARTITIONS_CANNOT_SHRINK = "PartitionsCannotShrink"
REPLICATION_FACTOR_CHANGE = "ReplicationFactorChangeRefused"


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the spec wants it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObservedTopic:
    """A topic as Kafka describes it (configs: the non-default ones)."""

    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicDecision:
    """What to do about one topic."""

    topic: str
    create: TopicSpec | None = None
    """Create the topic like this."""
    grow_to: int | None = None
    """Add partitions up to this count."""
    set_configs: Mapping[str, str] = field(default_factory=dict)
    """Alter these configs (incrementally; others untouched)."""
    refusals: tuple[Refusal, ...] = ()

    @property
    def ready(self) -> bool:
        return not self.refusals

    @property
    def changes(self) -> bool:
        return self.create is not None or self.grow_to is not None or bool(self.set_configs)

    def describe(self) -> str:
        """One line for an Event."""
        if self.create is not None:
            return (
                f"create topic {self.topic} ({self.create.partitions} partitions, "
                f"replication factor {self.create.replication_factor})"
            )
        steps = []
        if self.grow_to is not None:
            steps.append(f"grow to {self.grow_to} partitions")
        if self.set_configs:
            steps.append(f"set {', '.join(sorted(self.set_configs))}")
        return f"topic {self.topic}: {'; '.join(steps) or 'up to date'}"


def topic_configs(kafka: KafkaSpec) -> dict[str, str]:
    """The spec's configs over our defaults. With acks=all, ``min.insync.replicas=2``
    is what makes an acknowledged send survive a broker loss; Kafka's default is 1."""
    defaults = {"min.insync.replicas": "2"} if kafka.replication_factor >= 3 else {}
    return dict(sorted({**defaults, **kafka.topic_config}.items()))


def region_topics(region: ChatRegion) -> tuple[TopicSpec, ...]:
    """``tidings.<region>.deliveries``, ``.receipts``, ``.push`` and ``.analytics``."""
    kafka = region.spec.kafka
    configs = topic_configs(kafka)
    return tuple(
        TopicSpec(topic, kafka.partitions, kafka.replication_factor, configs)
        for topic in platform_topics(region.region)
    )


def decide_topic(desired: TopicSpec, observed: ObservedTopic | None) -> TopicDecision:
    """Create, adopt, grow, or refuse; never shrink, never recreate."""
    if observed is None:
        return TopicDecision(desired.name, create=desired)
    refusals: list[Refusal] = []
    grow_to = None
    if desired.partitions > observed.partitions:
        grow_to = desired.partitions
    elif desired.partitions < observed.partitions:
        refusals.append(
            Refusal(
                PARTITIONS_CANNOT_SHRINK,
                f"topic {desired.name} has {observed.partitions} partitions and Kafka cannot "
                f"remove partitions; set kafka.partitions to {observed.partitions} or more",
            )
        )
    if desired.replication_factor != observed.replication_factor:
        refusals.append(
            Refusal(
                REPLICATION_FACTOR_CHANGE,
                f"topic {desired.name} has replication factor {observed.replication_factor}, "
                f"the spec asks {desired.replication_factor}; the operator does not reassign "
                "replicas: reassign them with Kafka's tools, then match the spec to the topic",
            )
        )
    set_configs = {k: v for k, v in desired.configs.items() if observed.configs.get(k) != v}
    return TopicDecision(
        desired.name, grow_to=grow_to, set_configs=set_configs, refusals=tuple(refusals)
    )
