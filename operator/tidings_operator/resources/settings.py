"""A region's platform settings: the ConfigMap every pod of the region reads its
``TIDINGS_*`` variables from, and the Secret-backed variables beside it."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from tidings.core.shardmap import SHARD_MAP_FILE_NAME
from tidings_operator.models import ChatRegion
from tidings_operator.names import OPS_PORT, SETTINGS_PORT, settings_config_map
from tidings_operator.resources.env import SettingValue, from_secret, literal, settings_env
from tidings_operator.resources.meta import labels, object_meta
from tidings_operator.resources.pods import DATA_DIR, SHARD_MAP_DIR


def settings_data(region: ChatRegion) -> dict[str, str]:
    """The non-secret settings as ``TIDINGS_*`` variables."""
    spec = region.spec
    values: dict[str, SettingValue] = {
        "engine": "distributed",
        "region": region.region,
        "host": "0.0.0.0",  # reachable by probes and the Service, not only on loopback
        "port": SETTINGS_PORT,
        "ops_port": OPS_PORT,
        "data_dir": DATA_DIR,
        "dev_mode": spec.dev_mode,
        "log_level": spec.log_level,
        "public_url": spec.public_url,
        "partitions": spec.kafka.partitions,
        "shard_map_file": PurePosixPath(SHARD_MAP_DIR) / SHARD_MAP_FILE_NAME,
        "kafka_bootstrap": spec.kafka.bootstrap_servers,
        "kafka_replication_factor": spec.kafka.replication_factor,
        "cassandra_contact_points": ",".join(spec.cassandra.contact_points),
        "cassandra_port": spec.cassandra.port,
        "cassandra_local_dc": region.datacenter,
        "cassandra_keyspace": spec.cassandra.keyspace,
        "cassandra_replication": ",".join(f"{dc}:{n}" for dc, n in region.replication.items()),
        # The operator creates the keyspace with the right replication first; the
        # platform's idempotent migrations then create and upgrade its tables.
        "cassandra_migrate": True,
        "s3_endpoint": spec.s3.endpoint,
        "s3_public_endpoint": spec.s3.public_endpoint,
        "s3_region": spec.s3.region,
        "s3_bucket": spec.s3.bucket,
    }
    if peers := peer_clusters(region):
        # Only when a peer runs a cluster of its own: regions sharing one keep their pods.
        values["kafka_peers"] = ";".join(f"{name}={servers}" for name, servers in peers.items())
    if spec.redis.url is not None:
        values["redis_url"] = spec.redis.url
    if spec.tracing is not None and spec.tracing.otlp_endpoint:
        # Only when set: a region without tracing keeps its ConfigMap (and its pods).
        values["otlp_endpoint"] = spec.tracing.otlp_endpoint
        values["trace_sample_ratio"] = spec.tracing.sample_ratio
    return settings_env(values)


def peer_clusters(region: ChatRegion) -> dict[str, str]:
    """Peer region -> its Kafka bootstrap servers, for the peers whose cluster is not this
    region's (``spec.peers[].kafkaBootstrapServers``): what is routed to them is produced
    there (``TIDINGS_KAFKA_PEERS``)."""
    own = _servers(region.spec.kafka.bootstrap_servers)
    return {
        peer.name: ",".join(_servers(peer.kafka_bootstrap_servers))
        for peer in sorted(region.spec.peers, key=lambda p: p.name)
        if peer.kafka_bootstrap_servers and _servers(peer.kafka_bootstrap_servers) != own
    }


def _servers(bootstrap: str) -> list[str]:
    return sorted(s.strip() for s in bootstrap.split(",") if s.strip())


def secret_env(region: ChatRegion) -> list[dict[str, Any]]:
    """Settings read from Secrets: the Redis URL (when it carries a password), the
    Cassandra role and the S3 key pair."""
    spec = region.spec
    env: list[dict[str, Any]] = []
    if spec.redis.url_secret_ref is not None:
        ref = spec.redis.url_secret_ref
        env.append(from_secret("redis_url", ref.name, ref.key))
    if spec.cassandra.credentials_secret is not None:
        cass = spec.cassandra.credentials_secret
        env.append(from_secret("cassandra_username", cass.name, cass.username_key))
        env.append(from_secret("cassandra_password", cass.name, cass.password_key))
    if spec.s3.credentials_secret is not None:
        s3 = spec.s3.credentials_secret
        env.append(from_secret("s3_access_key", s3.name, s3.access_key_key))
        env.append(from_secret("s3_secret_key", s3.name, s3.secret_key_key))
    return env


def client_id_env(region: str, component: str) -> dict[str, Any]:
    """A Kafka client id per component: broker logs and quotas tell the workers apart."""
    return literal("kafka_client_id", f"tidings-{region}-{component}")


def settings_config_map_manifest(region: ChatRegion) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            settings_config_map(region.region), region, labels(region.region, "settings")
        ),
        "data": settings_data(region),
    }


def secret_names(region: ChatRegion) -> list[str]:
    """Secrets the region's pods read, so a reconcile can watch their versions."""
    return sorted({ref["valueFrom"]["secretKeyRef"]["name"] for ref in secret_env(region)})
