"""Kafka topics and the Cassandra keyspace watched, not only resynced.

Neither system has a watch API, so each region this operator runs has its topics listed
every ``--topic-check-interval`` seconds (one metadata request) and its keyspace looked
up every ``--keyspace-check-interval`` seconds (one ``system_schema`` read). A topic
deleted or a keyspace dropped behind the operator's back (a ``kafka-topics --delete``,
a ``DROP KEYSPACE``, a cleanup script) is then noticed within that interval:

1. the region's status turns ``Ready=False``/``Degraded=True`` with reason
   ``TopicMissing``, ``KeyspaceMissing`` or ``TableMissing`` (the keyspace is there, one
   of the platform's tables is not) naming what is missing, with a Warning Event of the
   same reason;
2. its reconcile is queued at once and converges the external state without waiting
   for the external resync: the topic recreated with the spec's partitions and
   settings, or the keyspace with its replication and the platform's tables (an
   ``ExternalUpdated`` Event each);
3. that reconcile reads them back: only when Kafka lists every topic and Cassandra the
   keyspace are the conditions computed afresh (Ready again); otherwise the reason
   stays and the next check tries again.

This is Strimzi's topic operator's stance: the external state is watched, not trusted
to stay as it was written. A Kafka or Cassandra that cannot be reached is not this
check's to report: the reconcile says so in the status; here it only means "nothing
seen missing this time".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from tidings_operator import metrics
from tidings_operator.clock import Clock
from tidings_operator.events import post_event
from tidings_operator.external import ExternalUnavailable
from tidings_operator.external_state import (
    KEYSPACE_MISSING,
    TABLE_MISSING,
    TOPIC_MISSING,
    CassandraLogin,
    External,
)
from tidings_operator.failure import not_ready_status
from tidings_operator.kube import ApiError, Kube
from tidings_operator.models import ChatRegion, parse
from tidings_operator.resources.refusal import Refusal
from tidings_operator.workqueue import Key

log = logging.getLogger(__name__)


MISSING = TOPIC_MISSING


def topics_missing(topics: Sequence[str]) -> Refusal:
    """The condition for topics Kafka does not list."""
    return Refusal(
        MISSING,
        f"Kafka does not list topic {', '.join(topics)} (deleted behind the operator's "
        "back): recreating it with the spec's partitions and settings",
    )


def keyspace_missing(keyspace: str) -> Refusal:
    """The condition for a keyspace Cassandra does not have."""
    return Refusal(
        KEYSPACE_MISSING,
        f"Cassandra has no keyspace {keyspace} (dropped behind the operator's back): "
        "recreating it with the spec's replication and the platform's tables; the "
        "messages it held are gone unless restored from a backup",
    )


def tables_missing(keyspace: str, tables: Sequence[str]) -> Refusal:
    """The condition for platform tables a keyspace lacks."""
    return Refusal(
        TABLE_MISSING,
        f"Cassandra keyspace {keyspace} has no table {', '.join(tables)} (dropped behind "
        "the operator's back): recreating it with the platform's schema; the rows it held "
        "are gone unless restored from a backup",
    )


def missing_status(
    previous: Mapping[str, Any], generation: int, problem: Refusal, now: datetime
) -> dict[str, Any] | None:
    """The status to write when a watch finds ``problem``: ``Ready=False`` and
    ``Degraded=True`` with its reason and message, until the reconcile that recreates
    what is missing reads it back and computes the conditions afresh. None when the
    status says so already (nothing to write, no second Event)."""
    status = not_ready_status(previous, generation, problem, now)
    return None if status == dict(previous) else status


async def mark_missing(kube: Kube, clock: Clock, key: Key, problem: Refusal) -> bool:
    """Write ``problem`` into the status of the region, fetched fresh, with a Warning
    Event, when it does not say so yet. False when nothing was written (already said,
    or the region is gone or going)."""
    body = await kube.get(key.kind, key.namespace, key.name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return False
    generation = int((body.get("metadata") or {}).get("generation", 0))
    status = missing_status(body.get("status") or {}, generation, problem, clock.now())
    if status is None:
        return False
    try:
        await kube.patch_status(key.kind, key.namespace, key.name, status)
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    metrics.RESOURCE_READY.labels(key.kind, key.namespace, key.name).set(0)
    await post_event(kube, body, reason=problem.reason, message=problem.message, warning=True)
    return True


def _region(body: Mapping[str, Any]) -> ChatRegion | None:
    try:
        region = parse(body)
    except ValueError:
        return None  # an invalid spec: its reconcile reports it
    return region if isinstance(region, ChatRegion) else None


async def missing_topics(external: External, body: Mapping[str, Any]) -> list[str]:
    """The topics of the region ``body`` that Kafka does not list now."""
    if (region := _region(body)) is None:
        return []
    try:
        missing = await external.missing_topics(region)
    except ExternalUnavailable as exc:
        log.debug("topics of %s not checked: %s", region.region, exc)
        return []
    if missing:
        log.warning(
            "region %s: topics missing from Kafka, reconciling now: %s",
            region.region,
            ", ".join(missing),
        )
    return missing


LoginOf = Callable[[ChatRegion], Awaitable[CassandraLogin | None]]
"""The region's Cassandra credentials (the reconciler reads its Secret)."""


async def keyspace_problem(
    external: External, body: Mapping[str, Any], login_of: LoginOf
) -> Refusal | None:
    """What the keyspace of the region ``body`` lacks now: the keyspace itself
    (``keyspace_missing``), else platform tables (``tables_missing``); None when whole."""
    if (region := _region(body)) is None:
        return None
    keyspace = region.spec.cassandra.keyspace
    try:  # a missing credentials Secret too: the reconcile reports it
        gap = await external.missing_schema(region, await login_of(region))
        if gap.keyspace:
            problem, missing = keyspace_missing(keyspace), keyspace
        elif gap.tables:
            problem, missing = tables_missing(keyspace, gap.tables), ", ".join(gap.tables)
        else:
            return None
    except ExternalUnavailable as exc:
        log.debug("keyspace of %s not checked: %s", region.region, exc)
        return None
    log.warning("region %s: %s missing, reconciling now", region.region, missing)
    return problem
