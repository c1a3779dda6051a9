"""Names the operator and the cluster agree on: API group, annotations, finalizer, labels
and the deterministic names of children.

Children get names derived from their owner alone (no random suffixes), so every
reconcile finds what an earlier one created and server-side apply stays idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

GROUP = "tidings.dev"
VERSION = "v1beta1"
"""The version the operator reads and writes (the CRDs' preferred one)."""
API_VERSION: Final = "tidings.dev/v1beta1"
"""``GROUP/VERSION``, spelled out so type checkers see the literal."""
OLD_VERSION = "v1alpha1"
"""Still served (deprecated) and still the storage version, so the previous operator and
a rolled-back chart keep working; the two versions share one schema (docs/upgrading.md)."""
OLD_API_VERSION: Final = "tidings.dev/v1alpha1"
STORAGE_VERSION = OLD_VERSION
SERVED_VERSIONS = (VERSION, OLD_VERSION)

CHAT_REGION: Final = "ChatRegion"
MESSAGE_SHARD: Final = "MessageShard"
PUSH_POOL: Final = "PushPool"

FINALIZER = f"{GROUP}/finalizer"
"""Held by every custom resource until its external state (topics, keyspace) is handled
per ``deletionPolicy``; Kubernetes children go by garbage collection."""


def finalizer_for(regions: frozenset[str] | None) -> str:
    """The finalizer of an operator running ``regions`` (None: every region it watches).

    Operators of different regions watch the same ChatRegions, and kopf removes its
    finalizer from any object no handler of its own needs: one shared name would be
    taken off one region by another region's operator. So each has its own."""
    if regions is None:
        return FINALIZER
    if len(regions) == 1:
        return f"{FINALIZER}-{next(iter(regions))}"
    joined = ",".join(sorted(regions))
    return f"{FINALIZER}-{hashlib.sha256(joined.encode()).hexdigest()[:12]}"


PAUSED_ANNOTATION = f"{GROUP}/paused"
"""``"true"`` on a custom resource: reconciliation stops (status says ``Paused``)."""
UNMANAGED_ANNOTATION = f"{GROUP}/unmanaged"
"""``"true"`` on a child object: the operator neither repairs nor deletes it (debugging
a single Deployment by hand, for instance)."""
SETTINGS_HASH_ANNOTATION = f"{GROUP}/settings-hash"
"""On pod templates: a digest of the settings ConfigMap. Settings are read once at
start-up, so a changed digest rolls the pods."""

REGION_LABEL = f"{GROUP}/region"
POOL_LABEL = f"{GROUP}/push-pool"

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
VERSION_LABEL = "app.kubernetes.io/version"

APP_NAME = "tidings"
MANAGER = "tidings-operator"
"""``app.kubernetes.io/managed-by`` value and the server-side apply field manager."""

REGION_NAME_PATTERN = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$"
"""A region name: the platform's ``TIDINGS_REGION`` pattern narrowed to a DNS-1035 label
of at most 40 characters, so ``<region>-<component>`` is a valid Service name."""

SETTINGS_PORT = 8080
"""The client port of every platform process (``TIDINGS_PORT``): REST, WebSocket and
health; the components' Services point at it."""
OPS_PORT = 9090
"""The operations port of every platform process (``TIDINGS_OPS_PORT``): ``/metrics``,
``/analytics/daily/*`` and health, never behind a Service or an ingress; Prometheus
scrapes the pods there."""


def is_true(annotations: Mapping[str, str] | None, key: str) -> bool:
    """An escape-hatch annotation is on when its value is ``"true"`` (any case)."""
    return (annotations or {}).get(key, "").strip().lower() == "true"


def component_name(region: str, component: str) -> str:
    """Deployment, Service, HPA and PDB of one component: ``us-east-gateway``."""
    return f"{region}-{component}"


def settings_config_map(region: str) -> str:
    return f"{region}-settings"


def shard_map_config_map(region: str) -> str:
    return f"{region}-shardmap"


def service_account(region: str) -> str:
    """ServiceAccount, Role and RoleBinding of a region's platform pods."""
    return f"{region}-platform"


def shard_name(region: str, index: int) -> str:
    """A MessageShard, named like the platform's own shards (``core.shardmap``)."""
    return f"{region}-{index}"


def push_pool_workload(pool: str) -> str:
    """Deployment and PDB of a PushPool."""
    return f"{pool}-push"
