"""The pod every platform process runs in: ``tidings serve <component>``.

Hardened as the Pod Security "restricted" profile asks: non-root, no privilege
escalation, no capabilities, RuntimeDefault seccomp, read-only root filesystem (the
data directory and ``/tmp`` are emptyDirs). The pods talk to no Kubernetes API, so no
service account token is mounted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tidings_operator.models.base import PodPlacement, ResourceRequirements
from tidings_operator.names import OPS_PORT, SETTINGS_PORT
from tidings_operator.resources.env import literal

DATA_DIR = "/var/lib/tidings"
"""``TIDINGS_DATA_DIR``: scratch space (the distributed engines keep no state there)."""
SHARD_MAP_DIR = "/etc/tidings/shardmap"
"""The shard map ConfigMap, mounted as a volume so a failover reaches running pods."""
SECRETS_DIR = "/var/run/secrets/tidings"
RUN_AS = 10001
"""UID and GID of the platform processes (any non-root id; the image must not need
root)."""


def prometheus_annotations(ops_port: int = OPS_PORT) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(ops_port),
        "prometheus.io/path": "/metrics",
    }


def volume_mount(name: str, path: str, *, read_only: bool = False) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": name, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    return mount


def shard_map_volume(config_map: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shard map ConfigMap as a volume, and its read-only mount at ``SHARD_MAP_DIR``
    (every platform pod has it: ``TIDINGS_SHARD_MAP_FILE`` names the file there)."""
    volume = {"name": "shardmap", "configMap": {"name": config_map}}
    return volume, volume_mount("shardmap", SHARD_MAP_DIR, read_only=True)


def secret_volume(name: str, secret: str, key: str) -> dict[str, Any]:
    """One Secret key as a file, readable by the pod's group only."""
    return {
        "name": name,
        "secret": {
            "secretName": secret,
            "items": [{"key": key, "path": key}],
            "defaultMode": 0o440,
        },
    }


def resources_dict(resources: ResourceRequirements) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if resources.requests:
        out["requests"] = dict(resources.requests)
    if resources.limits:
        out["limits"] = dict(resources.limits)
    return out


def container(
    component: str,
    *,
    image: str,
    pull_policy: str,
    env_from_config_map: str,
    env: Sequence[Mapping[str, Any]],
    resources: ResourceRequirements,
    mounts: Sequence[Mapping[str, Any]] = (),
    port: int | None = None,
    ops_port: int | None = None,
    host_network: bool = False,
) -> dict[str, Any]:
    """The platform container: settings from a ConfigMap, credentials from Secrets.
    Two ports: ``http`` for clients (the Services' target, and the probes: they check
    the server clients reach) and ``ops`` for Prometheus (metrics, analytics).
    ``port``/``ops_port``, when given, override the ConfigMap's (``env`` wins over
    ``envFrom``): on the host's network each component needs its own.

    ``host_network``: the pods of the component share their node's client port (see
    ``shared_port_container``)."""
    overrides = []
    if port is not None:
        overrides.append(literal("port", port))
    if ops_port is not None:
        overrides.append(literal("ops_port", ops_port))
    http = {"httpGet": {"path": "/healthz", "port": "http"}}
    spec: dict[str, Any] = {
        "name": component,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["tidings"],
        "args": ["serve", component],
        "ports": [
            {"name": "http", "containerPort": port or SETTINGS_PORT, "protocol": "TCP"},
            {"name": "ops", "containerPort": ops_port or OPS_PORT, "protocol": "TCP"},
        ],
        "envFrom": [{"configMapRef": {"name": env_from_config_map}}],
        "env": [*(dict(e) for e in env), *overrides],
        # HTTP is served only once the engines have started (Cassandra migrations
        # included), so the startup probe allows two minutes before liveness counts.
        "startupProbe": {**http, "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": {**http, "periodSeconds": 10, "failureThreshold": 3},
        # Ready means every engine answers: a pod cut off from Kafka or Cassandra
        # leaves the Service instead of failing requests.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            volume_mount("data", DATA_DIR),
            volume_mount("tmp", "/tmp"),
            *(dict(m) for m in mounts),
        ],
    }
    if reqs := resources_dict(resources):
        spec["resources"] = reqs
    return shared_port_container(spec) if host_network else spec


PROBE_COMMAND = ("python", "-m", "tidings.probe")
"""A probe of the container's own process (``tidings.probe``), by its operations port."""


def shared_port_container(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The container of a pod on its node's network, so that a node runs several pods of
    the component (a second gateway on a one-node cluster, an HPA's extra replicas):

    - ``TIDINGS_REUSE_PORT``: the pods share the client port (``SO_REUSEPORT``), the
      kernel spreads new connections among those whose engines have started;
    - no ``ports``: on the host's network each is a host port too, and the scheduler
      places one pod declaring a port per node (the second stayed Pending);
    - the probes run ``tidings.probe`` in the container: an HTTP probe of the shared
      client port would be answered by any pod's process (a new pod Ready before its
      own process serves), and the operations port, one per process, is known only to
      the process (the first pod on a node takes ``opsPort``, the next a free one);
      the command's time limit allows for a Python start-up on a busy node."""
    out = {k: v for k, v in spec.items() if k != "ports"}
    out["env"] = [*spec["env"], literal("reuse_port", True)]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        timing = {k: v for k, v in spec[probe].items() if k != "httpGet"}
        out[probe] = {"exec": {"command": [*PROBE_COMMAND, path]}, **timing, "timeoutSeconds": 5}
    return out


def pod_template(
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    service_account: str,
    container: Mapping[str, Any],
    volumes: Sequence[Mapping[str, Any]] = (),
    placement: PodPlacement | None = None,
    ops_port: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "metadata": {
            "labels": dict(labels),
            "annotations": {**prometheus_annotations(ops_port or OPS_PORT), **annotations},
        },
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [dict(container)],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {}},
                *(dict(v) for v in volumes),
            ],
        },
    }
    if placement is not None:
        spec["spec"] |= placement_spec(placement)
    return spec


def placement_spec(placement: PodPlacement) -> dict[str, Any]:
    """The pod spec fields of a ``PodPlacement`` (only those set)."""
    out: dict[str, Any] = {}
    if placement.host_network:
        # The cluster's DNS still resolves Services from the host's network.
        out |= {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
    if placement.node_selector:
        out["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        out["tolerations"] = [
            t.model_dump(by_alias=True, exclude_defaults=True) for t in placement.tolerations
        ]
    return out


def deployment(
    *,
    metadata: Mapping[str, Any],
    selector: Mapping[str, str],
    replicas: int | None,
    template: Mapping[str, Any],
) -> dict[str, Any]:
    """A Deployment; ``replicas=None`` leaves the count to an autoscaler (a value here
    would be re-applied on every reconcile and fight it)."""
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    spec |= {
        "selector": {"matchLabels": dict(selector)},
        "strategy": rollout_strategy(template),
        "template": dict(template),
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(metadata), "spec": spec}


def rollout_strategy(template: Mapping[str, Any]) -> dict[str, Any]:
    """Surge first: capacity never dips below the desired count during a rollout. Not
    on the host's network: a surge pod would share the client port but find the
    operations port its predecessor holds and take a free one, which it keeps after the
    predecessor is gone, out of sight of the ``prometheus.io/port`` annotation. There
    the old pod goes first, one at a time, and its successor gets ``opsPort``."""
    if template.get("spec", {}).get("hostNetwork"):
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}


def disruption_budget(metadata: Mapping[str, Any], selector: Mapping[str, str]) -> dict[str, Any]:
    """At most one pod of a workload evicted at a time. ``maxUnavailable`` rather than
    ``minAvailable``, so a one-replica component never blocks a node drain; unhealthy
    pods may always be evicted, so a crash-looping pod cannot block one either."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": dict(metadata),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(selector)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
