"""Everything a ChatRegion creates in Kubernetes, as manifests.

``region_children`` lists them in the order an applier should create them: identity
and configuration before the workloads that read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tidings.core.shardmap import Shard
from tidings_operator.models import REGION_COMPONENTS, SERVED_COMPONENTS, ChatRegion
from tidings_operator.names import (
    REGION_LABEL,
    SETTINGS_HASH_ANNOTATION,
    SETTINGS_PORT,
    VERSION_LABEL,
    component_name,
    service_account,
    settings_config_map,
    shard_map_config_map,
)
from tidings_operator.resources.meta import digest, labels, object_meta, selector_labels
from tidings_operator.resources.pods import (
    container,
    deployment,
    disruption_budget,
    pod_template,
    shard_map_volume,
)
from tidings_operator.resources.rbac import (
    role_binding_manifest,
    role_manifest,
    service_account_manifest,
)
from tidings_operator.resources.settings import (
    client_id_env,
    secret_env,
    settings_config_map_manifest,
    settings_data,
)
from tidings_operator.resources.shards import message_shards, shard_map_config_map_manifest

SERVICE_PORT = 80


def image_tag(image: str) -> str:
    """The tag of an image reference (``latest`` when it has none), for the version
    label."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return tag[:63].rstrip("-_.") or "latest"  # a label value: <= 63, ends alphanumeric


def component_labels(region: ChatRegion, component: str) -> dict[str, str]:
    return labels(
        region.region,
        component,
        {REGION_LABEL: region.region, VERSION_LABEL: image_tag(region.spec.image)},
    )


def settings_hash(region: ChatRegion, secret_versions: Mapping[str, str] | None = None) -> str:
    """What the pods read at start-up: the settings and, when the reconciler passes
    them, the ``resourceVersion`` of each Secret they read."""
    return digest(settings_data(region), dict(secret_versions or {}))


def component_deployment(
    region: ChatRegion, component: str, secret_versions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    spec = region.spec.components.of(component)
    name = component_name(region.region, component)
    pod_labels = component_labels(region, component)
    shard_map, shard_map_mount = shard_map_volume(shard_map_config_map(region.region))
    main = container(
        component,
        image=region.spec.image,
        pull_policy=region.spec.image_pull_policy,
        env_from_config_map=settings_config_map(region.region),
        env=[client_id_env(region.region, component), *secret_env(region)],
        resources=spec.resources,
        mounts=[shard_map_mount],
        port=spec.port,
        ops_port=spec.ops_port,
        host_network=region.spec.pods.host_network,
    )
    template = pod_template(
        labels=pod_labels,
        annotations={SETTINGS_HASH_ANNOTATION: settings_hash(region, secret_versions)},
        service_account=service_account(region.region),
        container=main,
        volumes=[shard_map],
        placement=region.spec.pods,
        ops_port=spec.ops_port,
    )
    return deployment(
        metadata=object_meta(name, region, pod_labels),
        selector=selector_labels(region.region, component),
        replicas=None if spec.autoscaling else spec.replicas,
        template=template,
    )


def component_service(region: ChatRegion, component: str) -> dict[str, Any]:
    """The Service of a component with client routes (gateway, router, media)."""
    if component not in SERVED_COMPONENTS:
        raise ValueError(f"{component} serves no client routes and gets no Service")
    gateway = region.spec.components.gateway
    is_gateway = component == "gateway"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(
            component_name(region.region, component),
            region,
            component_labels(region, component),
            gateway.service_annotations if is_gateway else None,
        ),
        "spec": {
            "type": gateway.service_type if is_gateway else "ClusterIP",
            "selector": selector_labels(region.region, component),
            "ports": [
                {
                    "name": "http",
                    "port": SERVICE_PORT,
                    "targetPort": service_target(region, component),
                    "protocol": "TCP",
                }
            ],
        },
    }


def service_target(region: ChatRegion, component: str) -> int | str:
    """The container's ``http`` port; on the host's network, where the pods declare no
    ports (see ``pods.shared_port_container``), the number they listen on."""
    if region.spec.pods.host_network:
        return region.spec.components.of(component).port or SETTINGS_PORT
    return "http"


def component_autoscaler(region: ChatRegion, component: str) -> dict[str, Any] | None:
    """An autoscaling/v2 HPA on CPU, or None when the component has no autoscaling."""
    scaling = region.spec.components.of(component).autoscaling
    if scaling is None:
        return None
    name = component_name(region.region, component)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(name, region, component_labels(region, component)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def component_disruption_budget(region: ChatRegion, component: str) -> dict[str, Any]:
    name = component_name(region.region, component)
    return disruption_budget(
        object_meta(name, region, component_labels(region, component)),
        selector_labels(region.region, component),
    )


def region_children(
    region: ChatRegion,
    *,
    shards: Iterable[Shard] | None = None,
    secret_versions: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every child of a ChatRegion, in creation order.

    ``shards``: the MessageShards seen in the cluster (own and peers'), for the shard
    map; by default the region's own as first created. ``secret_versions``: Secret name
    -> resourceVersion, so a rotated credential rolls the pods.
    """
    children: list[dict[str, Any]] = [
        service_account_manifest(region),
        role_manifest(region),
        role_binding_manifest(region),
        settings_config_map_manifest(region),
        shard_map_config_map_manifest(region, shards),
    ]
    for component in REGION_COMPONENTS:
        children.append(component_deployment(region, component, secret_versions))
        if component in SERVED_COMPONENTS:
            children.append(component_service(region, component))
        if (hpa := component_autoscaler(region, component)) is not None:
            children.append(hpa)
        children.append(component_disruption_budget(region, component))
    children.extend(message_shards(region))
    return children
