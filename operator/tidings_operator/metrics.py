"""The operator's Prometheus metrics (served on ``--metrics-port`` at ``/metrics``)."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

_LAG_REGIONS: dict[tuple[str, str, str], str] = {}
"""The ``region`` label of each resource's CONSUMER_LAG series, to remove it."""
_REFUSAL_REASONS: dict[tuple[str, str, str], set[str]] = {}
"""The ``reason`` labels of each resource's REFUSALS series, to remove them."""

RECONCILES = Counter(
    "tidings_operator_reconcile_total",
    "Reconciles run, by resource kind and result (ok, error, paused, deleting, gone, "
    "invalid, skipped: a region another operator runs).",
    ["kind", "result"],
)
RECONCILE_FAILURES = Counter(
    "tidings_operator_reconcile_failures_total",
    "Reconciles that raised, by kind and exception type; each is retried with back-off.",
    ["kind", "error"],
)
RECONCILE_SECONDS = Histogram(
    "tidings_operator_reconcile_duration_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PAUSED = Gauge(
    "tidings_operator_paused_resources",
    "Resources whose reconciliation the paused annotation stops, by kind.",
    ["kind"],
)
CHILD_CHANGES = Counter(
    "tidings_operator_child_changes_total",
    "Children changed by an apply, by kind and change: Created, Patched (drift repaired "
    "or spec followed) or Deleted (pruned); Unchanged applies are not counted.",
    ["kind", "change"],
)
REFUSALS = Gauge(
    "tidings_operator_refusals",
    "Spec changes the operator refuses now (topic shrink, datacenter removal...), by "
    "resource and reason (the Ready condition's, e.g. PartitionsCannotShrink); a series "
    "goes when its reason is resolved.",
    ["kind", "namespace", "name", "reason"],
)
EVENTS_DROPPED = Counter(
    "tidings_operator_events_dropped_total",
    "Events the API server refused (a terminating namespace, RBAC), by reason; the "
    "reconcile goes on without them.",
    ["reason"],
)
HEARTBEATS = Counter(
    "tidings_operator_heartbeats_total",
    "Heartbeat Leases renewed, by region (a region whose count stops is failing).",
    ["region"],
)
FAILOVER_TICKS = Counter(
    "tidings_operator_failover_ticks_total",
    "Runs of the failover loop (heartbeat, peer probes and verdicts), by outcome (ok, "
    "paused, gone, deleting, invalid, error).",
    ["result"],
)
PEER_HEALTH_CHANGES = Counter(
    "tidings_operator_peer_health_changes_total",
    "Peers entering a health state (Healthy, Suspect, Failed, OperatorDown, Unknown).",
    ["health"],
)
SHARD_MOVES = Counter(
    "tidings_operator_shard_moves_total",
    "MessageShards fenced and moved to another owner, by trigger (automatic takeover).",
    ["trigger"],
)
QUEUE_ACTIVE = Gauge(
    "tidings_operator_queue_active_keys",
    "Objects with a reconcile queued or running.",
)
RECONCILES_RUNNING = Gauge(
    "tidings_operator_reconciles_running",
    "Reconciles in progress (at most --max-concurrent-reconciles per kind).",
)
RESOURCE_READY = Gauge(
    "tidings_operator_resource_ready",
    "1 while a resource's Ready condition is True, else 0; by kind, namespace and name "
    "(removed with the resource).",
    ["kind", "namespace", "name"],
)
RESOURCE_PAUSED = Gauge(
    "tidings_operator_resource_paused",
    "1 while the paused annotation stops a resource's reconciliation, else 0 (removed "
    "with the resource).",
    ["kind", "namespace", "name"],
)
PEERING_PAUSED = Gauge(
    "tidings_operator_peering_paused",
    "1 while this operator is paused by its kopf peering (another operator of a higher or "
    'the same priority is alive), else 0; by the peering\'s namespace ("": cluster-wide).',
    ["namespace"],
)
CONSUMER_LAG = Gauge(
    "tidings_operator_consumer_lag",
    "Records a worker group has not committed, as the last reconcile read them from Kafka: "
    "the delivery group on a MessageShard's partitions, the push group on a PushPool's "
    "topic. Read even while the workers are down.",
    ["kind", "namespace", "name", "region"],
)
OLDEST_UNDELIVERED_AGE = Gauge(
    "tidings_operator_oldest_undelivered_age_seconds",
    "Age of the oldest record a worker group has not committed (accepted but not yet "
    "stored in an inbox, for the delivery group), from its Kafka timestamp, as the last "
    "reconcile read it; 0 when none waits. Grows even while the workers are down.",
    ["kind", "namespace", "name", "region"],
)
PEER_HEALTH = Gauge(
    "tidings_operator_peer_health",
    "1 for the health a region last judged each peer to be in (Healthy, Suspect, Failed, "
    "OperatorDown, Unknown), 0 for the others.",
    ["region", "peer", "health"],
)


def forget_resource(kind: str, namespace: str, name: str) -> None:
    """Drop every series labelled with a resource that is gone: a deleted region must
    not keep exporting its last readiness or heartbeat count."""
    for gauge in (RESOURCE_READY, RESOURCE_PAUSED):
        with contextlib.suppress(KeyError):
            gauge.remove(kind, namespace, name)
    if kind == "ChatRegion":
        with contextlib.suppress(KeyError):
            HEARTBEATS.remove(name)
    forget_consumer_lag(kind, namespace, name)
    set_refusals(kind, namespace, name, ())


def set_consumer_lag(kind: str, namespace: str, name: str, region: str, lag: int) -> None:
    """Export a resource's lag under its owner region, dropping a series left under a
    previous owner (a shard moved by a failover)."""
    key = (kind, namespace, name)
    previous = _LAG_REGIONS.get(key)
    if previous is not None and previous != region:
        CONSUMER_LAG.remove(kind, namespace, name, previous)
        with contextlib.suppress(KeyError):
            OLDEST_UNDELIVERED_AGE.remove(kind, namespace, name, previous)
    _LAG_REGIONS[key] = region
    CONSUMER_LAG.labels(kind, namespace, name, region).set(lag)


def set_oldest_undelivered_age(
    kind: str, namespace: str, name: str, region: str, age_s: float
) -> None:
    """Export the age of a resource's oldest waiting record (after ``set_consumer_lag``,
    which tracks the owner region both gauges are labelled with)."""
    OLDEST_UNDELIVERED_AGE.labels(kind, namespace, name, region).set(age_s)


def forget_consumer_lag(kind: str, namespace: str, name: str) -> None:
    """Stop exporting a resource's lag: it is gone, or another region's operator owns it
    now (a last value left behind would add to the region's backlog for ever)."""
    region = _LAG_REGIONS.pop((kind, namespace, name), None)
    if region is not None:
        CONSUMER_LAG.remove(kind, namespace, name, region)
        with contextlib.suppress(KeyError):
            OLDEST_UNDELIVERED_AGE.remove(kind, namespace, name, region)


def set_refusals(kind: str, namespace: str, name: str, reasons: Iterable[str]) -> None:
    """Export how many spec changes of a resource are refused now, per reason, and drop
    the series of reasons no longer refused (the alert fires per remaining series)."""
    key = (kind, namespace, name)
    counts = collections.Counter(reasons)
    for resolved in _REFUSAL_REASONS.pop(key, set()) - counts.keys():
        with contextlib.suppress(KeyError):
            REFUSALS.remove(kind, namespace, name, resolved)
    for reason, count in counts.items():
        REFUSALS.labels(kind, namespace, name, reason).set(count)
    if counts:
        _REFUSAL_REASONS[key] = set(counts)
