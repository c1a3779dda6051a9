"""Kafka topics watched, not only resynced.

Kafka has no watch API, so each region this operator runs has its topics listed every
``--topic-check-interval`` seconds (one metadata request). A topic deleted behind the
operator's back (a ``kafka-topics --delete``, a cleanup script) is then noticed within
that interval: the region's reconcile is queued at once, and it converges the topics
without waiting for the external resync, recreating the missing one with the spec's
partitions and settings (a ``TopicMissing`` Warning Event names what was missing, an
``ExternalUpdated`` one the recreation). This is Strimzi's topic operator's
stance: Kafka's state is watched, not trusted to stay as it was written.

A Kafka that cannot be reached is not this check's to report: the reconcile says so in
the region's status; here it only means "nothing seen missing this time".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tidings_operator import metrics
from tidings_operator.external import ExternalUnavailable
from tidings_operator.external_state import External
from tidings_operator.kube import ApiError, Kube
from tidings_operator.models import ChatRegion, parse

log = logging.getLogger(__name__)


MISSING = "TopicMissing"


async def report_missing(kube: Kube, body: Mapping[str, Any], missing: list[str]) -> None:
    """A Warning Event on the region naming the topics found missing (its reconcile,
    queued at once, recreates them and says so in an ``ExternalUpdated`` Event)."""
    try:
        await kube.event(
            body,
            reason=MISSING,
            message=f"deleted from Kafka behind the operator's back, recreating: "
            f"{', '.join(missing)}",
            warning=True,
        )
    except ApiError as exc:
        metrics.EVENTS_DROPPED.labels(MISSING).inc()
        log.warning("event %s not posted: %s", MISSING, exc)


async def missing_topics(external: External, body: Mapping[str, Any]) -> list[str]:
    """The topics of the region ``body`` that Kafka does not list now."""
    try:
        region = parse(body)
    except ValueError:
        return []  # an invalid spec: its reconcile reports it
    if not isinstance(region, ChatRegion):
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
