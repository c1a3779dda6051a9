"""Pure builders: a custom resource in, desired Kubernetes manifests out, plus the
topic and keyspace decisions a reconcile takes. Plain dicts, no API calls."""

from __future__ import annotations

from tidings_operator.resources.keyspace import KeyspacePlan, ObservedKeyspace, plan_keyspace
from tidings_operator.resources.pushpool import pool_children
from tidings_operator.resources.refusal import Refusal
from tidings_operator.resources.region import region_children
from tidings_operator.resources.topics import (
    ObservedTopic,
    TopicDecision,
    TopicSpec,
    decide_topic,
    region_topics,
)

__all__ = [
    "KeyspacePlan",
    "ObservedKeyspace",
    "ObservedTopic",
    "Refusal",
    "TopicDecision",
    "TopicSpec",
    "decide_topic",
    "plan_keyspace",
    "pool_children",
    "region_children",
    "region_topics",
]
