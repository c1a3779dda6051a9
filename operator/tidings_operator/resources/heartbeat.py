"""The heartbeat Lease a region's operator renews while it runs, and reading a peer's.

A ``coordination.k8s.io/v1`` Lease, as kubelets and leader election use them: its
holder, ``renewTime`` and ``leaseDurationSeconds`` say until when the holder vouches
for the region. Owned by the ChatRegion, so it goes with it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tidings_operator.failover import Heartbeat, heartbeat_lease_name
from tidings_operator.models import ChatRegion
from tidings_operator.quorum import OBSERVATIONS_ANNOTATION
from tidings_operator.resources.meta import Manifest, labels, object_meta

COMPONENT = "heartbeat"


def micro_time(moment: datetime) -> str:
    """Kubernetes' ``MicroTime`` (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def heartbeat_lease(
    region: ChatRegion,
    *,
    holder: str,
    now: datetime,
    duration_seconds: int,
    observations: str | None = None,
) -> Manifest:
    """The Lease to apply. ``observations`` is what the region publishes of its peers'
    data planes (``quorum.publish``), for the other regions to count."""
    meta = object_meta(
        heartbeat_lease_name(region.region),
        region,
        labels(region.region, COMPONENT),
        {OBSERVATIONS_ANNOTATION: observations} if observations is not None else None,
    )
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": micro_time(now),
        },
    }


def read_heartbeat(lease: Mapping[str, Any] | None) -> Heartbeat | None:
    """The heartbeat in a Lease; None when there is no Lease or it was never renewed."""
    spec = (lease or {}).get("spec") or {}
    renewed, duration = spec.get("renewTime"), spec.get("leaseDurationSeconds")
    if not renewed or not duration:
        return None
    moment = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    return Heartbeat(renewed=moment, duration_seconds=int(duration))
