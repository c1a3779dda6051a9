"""Everything a PushPool creates: the workers' Deployment and their PDB.

The workers read the region's settings ConfigMap and Secrets (Kafka, Cassandra, Redis,
as every platform process does) plus the pool's own ``TIDINGS_PUSH_*`` and provider
settings.

Scaling on the push topic's consumer lag is the operator's own decision (it reads the
lag from Kafka each reconcile and passes ``replicas`` in), not an HPA's: an HPA would
need a Kafka-lag metrics adapter (kafka-exporter with prometheus-adapter, or KEDA)
that a cluster may not run; the operator already talks to Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidings.core.shardmap import push_consumer_group
from tidings_operator.models import ChatRegion, PushPool
from tidings_operator.models.pushpool import ApnsSpec, FcmSpec
from tidings_operator.names import (
    POOL_LABEL,
    REGION_LABEL,
    SETTINGS_HASH_ANNOTATION,
    VERSION_LABEL,
    push_pool_workload,
    service_account,
    settings_config_map,
    shard_map_config_map,
)
from tidings_operator.resources.env import literal
from tidings_operator.resources.meta import (
    digest,
    labels,
    object_meta,
    selector_labels,
    selector_text,
)
from tidings_operator.resources.pods import (
    SECRETS_DIR,
    container,
    deployment,
    disruption_budget,
    pod_template,
    secret_volume,
    shard_map_volume,
    volume_mount,
)
from tidings_operator.resources.region import image_tag
from tidings_operator.resources.settings import client_id_env, secret_env, settings_data

COMPONENT = "push"
CREDENTIALS_DIR = f"{SECRETS_DIR}/push"
CA_DIR = f"{SECRETS_DIR}/ca"


def pool_consumer_group(region: str, provider: str) -> str:
    """The consumer group the pool's workers consume the push topic in (one group per
    provider, as the platform's push worker names it): the lag metric names it."""
    return push_consumer_group(region, [provider])


def pool_selector(pool: PushPool) -> dict[str, str]:
    return selector_labels(pool.metadata.name, COMPONENT)


def pool_selector_text(pool: PushPool) -> str:
    """``status.selector`` of the scale subresource."""
    return selector_text(pool_selector(pool))


def push_env(pool: PushPool) -> list[dict[str, Any]]:
    """The pool's ``TIDINGS_PUSH_*`` and provider settings."""
    spec = pool.spec
    env = [
        literal("push_providers", spec.provider),
        literal("push_rate", spec.rate),
        literal("push_burst", spec.burst),
        literal("push_concurrency", spec.concurrency),
        literal("push_max_attempts", spec.max_attempts),
        literal("push_backoff_base_s", spec.backoff_base_seconds),
        literal("push_collapse_s", spec.collapse_seconds),
    ]
    key_file = f"{CREDENTIALS_DIR}/{spec.credentials_secret.key}"
    if spec.provider == "fcm":
        fcm = spec.fcm or FcmSpec()
        env.append(literal("fcm_credentials_file", key_file))
        if fcm.endpoint:
            env.append(literal("fcm_endpoint", fcm.endpoint))
        if fcm.token_uri:
            env.append(literal("fcm_token_uri", fcm.token_uri))
        if fcm.ca_secret is not None:
            env.append(literal("fcm_ca_file", f"{CA_DIR}/{fcm.ca_secret.key}"))
    else:
        apns: ApnsSpec | None = spec.apns
        if apns is None:  # the model refuses this already; keeps the types honest
            raise ValueError("provider apns needs the apns section")
        env += [
            literal("apns_endpoint", apns.endpoint),
            literal("apns_key_file", key_file),
            literal("apns_key_id", apns.key_id),
            literal("apns_team_id", apns.team_id),
            literal("apns_topic", apns.topic),
        ]
        if apns.ca_secret is not None:
            env.append(literal("apns_ca_file", f"{CA_DIR}/{apns.ca_secret.key}"))
    return env


def _ca_secret(pool: PushPool) -> tuple[str, str] | None:
    section = pool.spec.fcm if pool.spec.provider == "fcm" else pool.spec.apns
    if section is None or section.ca_secret is None:
        return None
    return section.ca_secret.name, section.ca_secret.key


def pool_deployment(
    pool: PushPool,
    region: ChatRegion,
    secret_versions: Mapping[str, str] | None = None,
    replicas: int | None = None,
) -> dict[str, Any]:
    """``replicas``: the count the lag decision chose; default ``spec.replicas``."""
    spec = pool.spec
    image = spec.image or region.spec.image
    pod_labels = labels(
        pool.metadata.name,
        COMPONENT,
        {
            REGION_LABEL: region.region,
            POOL_LABEL: pool.metadata.name,
            VERSION_LABEL: image_tag(image),
        },
    )
    own_env = push_env(pool)
    creds = spec.credentials_secret
    shard_map, shard_map_mount = shard_map_volume(shard_map_config_map(region.region))
    volumes = [shard_map, secret_volume("credentials", creds.name, creds.key)]
    mounts = [shard_map_mount, volume_mount("credentials", CREDENTIALS_DIR, read_only=True)]
    if (ca := _ca_secret(pool)) is not None:
        volumes.append(secret_volume("ca", *ca))
        mounts.append(volume_mount("ca", CA_DIR, read_only=True))
    main = container(
        COMPONENT,
        image=image,
        pull_policy=region.spec.image_pull_policy,
        env_from_config_map=settings_config_map(region.region),
        env=[
            client_id_env(region.region, f"{COMPONENT}-{spec.provider}"),
            *secret_env(region),
            *own_env,
        ],
        resources=spec.resources,
        mounts=mounts,
        port=spec.port,
        ops_port=spec.ops_port,
        host_network=region.spec.pods.host_network,
    )
    hashed = digest(settings_data(region), own_env, dict(secret_versions or {}))
    template = pod_template(
        labels=pod_labels,
        annotations={SETTINGS_HASH_ANNOTATION: hashed},
        service_account=service_account(region.region),
        container=main,
        volumes=volumes,
        placement=region.spec.pods,
        ops_port=spec.ops_port,
    )
    return deployment(
        metadata=object_meta(push_pool_workload(pool.metadata.name), pool, pod_labels),
        selector=pool_selector(pool),
        replicas=spec.replicas if replicas is None else replicas,
        template=template,
    )


def pool_children(
    pool: PushPool,
    region: ChatRegion,
    *,
    secret_versions: Mapping[str, str] | None = None,
    replicas: int | None = None,
) -> list[dict[str, Any]]:
    """Every child of a PushPool, in creation order. ``region`` is the ChatRegion the
    pool names (same namespace)."""
    if pool.spec.region != region.region:
        raise ValueError(f"PushPool {pool.metadata.name} belongs to {pool.spec.region}")
    name = push_pool_workload(pool.metadata.name)
    return [
        pool_deployment(pool, region, secret_versions, replicas),
        disruption_budget(
            object_meta(name, pool, labels(pool.metadata.name, COMPONENT)), pool_selector(pool)
        ),
    ]
