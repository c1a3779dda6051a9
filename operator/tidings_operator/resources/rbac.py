"""The identity of a region's platform pods: a ServiceAccount and a least-privilege Role.

The platform calls no Kubernetes API today, so its pods mount no token. The Role grants
the one read a platform process may need: watching its region's shard map ConfigMap,
which tells it of a failover sooner than the kubelet refreshes the mounted file.
"""

from __future__ import annotations

from typing import Any

from tidings_operator.models import ChatRegion
from tidings_operator.names import service_account, shard_map_config_map
from tidings_operator.resources.meta import labels, object_meta


def _meta(region: ChatRegion) -> dict[str, Any]:
    return object_meta(service_account(region.region), region, labels(region.region, "platform"))


def service_account_manifest(region: ChatRegion) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(region),
        "automountServiceAccountToken": False,
    }


def role_manifest(region: ChatRegion) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(region),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [shard_map_config_map(region.region)],
                "verbs": ["get", "watch"],
            }
        ],
    }


def role_binding_manifest(region: ChatRegion) -> dict[str, Any]:
    name = service_account(region.region)
    subject: dict[str, Any] = {"kind": "ServiceAccount", "name": name}
    if region.metadata.namespace:
        subject["namespace"] = region.metadata.namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(region),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [subject],
    }
