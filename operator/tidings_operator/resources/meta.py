"""Metadata of children: recommended labels, owner references, object metadata.

Every child carries a controller owner reference to its custom resource, so Kubernetes
garbage-collects it with its owner and the operator can list exactly what it owns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tidings_operator.models import Resource
from tidings_operator.names import (
    APP_NAME,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    NAME_LABEL,
    PART_OF_LABEL,
)

Manifest = dict[str, Any]


def owner_reference(
    *, api_version: str, kind: str, name: str, uid: str, controller: bool = True
) -> dict[str, Any]:
    """An ``ownerReferences`` entry. ``blockOwnerDeletion`` makes a foreground delete of
    the owner wait for the child."""
    if not uid:
        raise ValueError(f"{kind} {name} has no uid: children need the owner as stored")
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def owned_by(owner: Resource) -> dict[str, Any]:
    """The controller reference to a custom resource."""
    return owner_reference(
        api_version=owner.api_version,
        kind=owner.kind,
        name=owner.metadata.name,
        uid=owner.metadata.uid,
    )


def selector_labels(instance: str, component: str) -> dict[str, str]:
    """Labels a workload selects its pods by; never changed after creation (a
    Deployment's selector is immutable), hence no version in them."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: instance, COMPONENT_LABEL: component}


def labels(instance: str, component: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The recommended ``app.kubernetes.io/*`` labels plus ``extra``."""
    return {
        **selector_labels(instance, component),
        PART_OF_LABEL: APP_NAME,
        MANAGED_BY_LABEL: MANAGER,
        **(extra or {}),
    }


def object_meta(
    name: str,
    owner: Resource,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``metadata`` of a child: in the owner's namespace, owned by it."""
    meta: dict[str, Any] = {"name": name}
    if owner.metadata.namespace:
        meta["namespace"] = owner.metadata.namespace
    meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    meta["ownerReferences"] = [owned_by(owner)]
    return meta


def selector_text(selector: Mapping[str, str]) -> str:
    """A label selector as a string (``status.selector`` of the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def digest(*parts: Any) -> str:
    """A short, stable digest of JSON-able values (pod template annotations)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
