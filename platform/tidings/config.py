"""Settings from the environment (``TIDINGS_*``), validated at start-up."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tidings.core.leases import LeaseTerms
from tidings.core.limitkeys import parse_networks
from tidings.core.limits import INBOX_POLL_INTERVAL_S, RateLimits
from tidings.core.push import Provider

COMPONENTS = ("gateway", "router", "media", "presence", "delivery", "push", "analytics")
"""What ``tidings serve`` can run alone; ``tidings up`` runs them all (``push`` only
when a provider is configured, see ``up_components``)."""

DEFAULT_SAMPLE_RATIO = 0.01
"""Share of sends traced by default (``trace_sample_ratio``): enough to follow slow
messages on a busy region, few enough that the message path's cost does not move (see
docs/observability.md)."""

CONFIG_FILE_ENV = "TIDINGS_CONFIG_FILE"
"""A TOML file of settings (keys are the setting names without ``TIDINGS_``, lower
case); environment variables override it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="forbid")

    engine: Literal["embedded", "distributed"] = "embedded"
    """``embedded``: SQLite, in-process bus and local files, one process (``tidings up``).
    ``distributed``: Kafka, Cassandra, Redis and S3, every service its own process."""
    data_dir: Path = Path(".tidings-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    """The client port: REST, WebSocket, ``/healthz`` and ``/readyz`` (0 picks a free one)."""
    ops_port: int = Field(default=9090, ge=0, le=65535)
    """The operations port, on ``host`` too: ``/metrics``, ``/analytics/daily/*`` (the
    analytics process), ``/healthz`` and ``/readyz``. Keep it off the public ingress;
    0 picks a free one (several processes on one machine)."""
    reuse_port: bool = False
    """Listen on the client port with ``SO_REUSEPORT``: several processes of one user on
    one host (a component's pods on a node's network) share the port, and the kernel
    spreads new connections among them. The operations port stays per process: when
    ``ops_port`` is taken, a free one is used instead and written to ``<data_dir>/ops-port``
    (where the pod's probes read it). Set by the operator for ``pods.hostNetwork``."""
    public_url: str = ""
    """Base of absolute blob URLs; empty means URLs relative to the gateway."""
    region: str = Field(default="local", pattern=r"^[a-z0-9-]{1,40}$")
    partitions: int = Field(default=8, ge=1, le=1024)
    shard_map_file: Path | None = None
    """The shard map the operator publishes (JSON, ``shardmap.json``), re-read while
    running: it says which region owns each user. Unset: this region serves every user."""
    shard_lease_s: float = Field(default=15.0, ge=1.0, le=300.0)
    """How long a delivery process's renewal of a shard lease holds (``core.leases``;
    only with a shard map). A region cut off from the others' datacenters stops storing
    within this; a failed region's shards can be taken this long after its last renewal."""
    shard_lease_skew_s: float = Field(default=2.0, ge=0.0, le=60.0)
    """The largest wall-clock difference between regions the leases tolerate."""
    dev_mode: bool = True
    """Dev mode logs one-time codes instead of sending SMS. Never in production."""
    inbox_poll_interval: float = Field(default=INBOX_POLL_INTERVAL_S, gt=0)
    """Seconds between inbox reads of an idle socket (see ``INBOX_POLL_INTERVAL_S``)."""
    max_in_flight: int = Field(default=32, ge=1, le=1024)
    heartbeat_timeout_s: float = Field(default=90.0, gt=0)
    log_level: str = "info"
    trusted_proxies: str = ""
    """Addresses or CIDR networks (comma-separated) of the reverse proxies in front of
    the REST API. Only a request from one of them has its ``X-Forwarded-For`` read, and
    the nearest address there that is not a trusted proxy counts as the client's (for
    the per-address limits). Empty: the TCP peer is the client, whatever it claims."""
    rate_limits: dict[str, float] = Field(default_factory=dict)
    """Overrides of ``core.limits.RateLimits`` by field name, e.g.
    ``{"otp_address_burst": 100000, "register_address_burst": 100000}`` (JSON in the
    environment, a table in TOML) for a load test registering many accounts from one
    address. Unknown names are refused."""

    # traces (names match the ChatRegion's spec.tracing) --------------------------------
    otlp_endpoint: str = Field(default="", max_length=2048, pattern=r"^(https?://\S+)?$")
    """Where spans of the message path go: an OpenTelemetry collector's OTLP/HTTP base
    URL (e.g. ``http://otel-collector:4318``; ``/v1/traces`` is added). Empty: no
    tracing at all. Headers, timeout and TLS: the standard ``OTEL_EXPORTER_OTLP_*``
    variables; batching: ``OTEL_BSP_*``."""
    trace_sample_ratio: float = Field(default=DEFAULT_SAMPLE_RATIO, ge=0.0, le=1.0)
    """Share of sends traced (decided at accept; every later hop of a traced send is
    traced too). 0 traces nothing even with ``otlp_endpoint`` set."""

    # distributed engines (names match the ChatRegion custom resource) ----------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma-separated ``host:port``."""
    kafka_replication_factor: int = Field(default=1, ge=1, le=7)
    """Replication of topics the platform creates when missing (the operator normally
    creates them first)."""
    kafka_client_id: str = "tidings"
    kafka_peers: str = ""
    """Peer regions with a Kafka cluster of their own, ``region=host:port,host:port``
    separated by ``;``: what this region produces for a user whose shard a peer owns goes
    to that peer's cluster (and is accepted only once its brokers acknowledged it).
    Regions not named here share this region's cluster."""
    cassandra_contact_points: str = "127.0.0.1"
    """Cassandra contact points, comma-separated hosts."""
    cassandra_port: int = Field(default=9042, ge=1, le=65535)
    cassandra_local_dc: str = "local"
    """This region's datacenter: queries go there at LOCAL_QUORUM."""
    cassandra_keyspace: str = Field(default="tidings", pattern=r"^[a-z][a-z0-9_]{0,47}$")
    cassandra_replication: str = ""
    """``dc:replicas`` pairs for NetworkTopologyStrategy, e.g. ``us-east:3,eu-west:3``;
    empty means ``<local_dc>:1``."""
    cassandra_username: str = ""
    cassandra_password: str = ""
    cassandra_migrate: bool = True
    """Apply schema migrations at start-up (idempotent); off when the operator owns them."""
    inbox_ttl_days: int = Field(default=30, ge=1, le=365)
    """Undelivered envelopes expire after this many days."""
    s3_endpoint: str = ""
    """S3 API URL; empty means AWS for ``s3_region``."""
    s3_public_endpoint: str = ""
    """URL clients reach the S3 store at, when it differs from ``s3_endpoint``."""
    s3_region: str = "us-east-1"
    s3_bucket: str = "tidings"
    s3_access_key: str = ""
    s3_secret_key: str = ""

    # push (names match the PushPool custom resource) ------------------------------
    redis_url: str = ""
    """When set (e.g. ``redis://127.0.0.1:6390/0``), presence, device channels, rate-limit
    buckets, one-time codes and dedupe keys live in Redis and are shared by every process
    (several gateways, push workers); empty keeps them in process memory."""
    redis_max_connections: int = Field(default=64, ge=1)
    """Redis command connections per process (a bounded pool; Pub/Sub takes one more of
    its own). A ``?max_connections=`` in ``redis_url`` wins."""
    redis_pool_timeout: float = Field(default=5.0, gt=0)
    """Seconds a Redis command waits for a free pooled connection before failing
    (``503``, retry). A ``?timeout=`` in ``redis_url`` wins."""
    push_providers: str = ""
    """Comma-separated providers this process pushes through: ``fcm``, ``apns`` or
    ``fcm,apns``. Empty: no push worker (push jobs wait on the bus)."""
    push_rate: float = Field(default=500.0, gt=0)
    """Pushes per second per provider, shared by every push worker of the region."""
    push_burst: int = Field(default=1000, ge=1)
    """Token-bucket capacity of ``push_rate``: pushes allowed back to back."""
    push_concurrency: int = Field(default=64, ge=1, le=4096)
    """Provider requests in flight per push worker process."""
    push_max_attempts: int = Field(default=5, ge=1, le=50)
    """Sends per push job (first try included) while the provider answers retry."""
    push_backoff_base_s: float = Field(default=0.5, gt=0)
    """Backoff base: retry n waits up to ``base * 2**n`` s (full jitter, capped at 60 s);
    a provider's Retry-After wins."""
    push_collapse_s: float = Field(default=10.0, ge=0)
    """At most one push per device in this window: a burst of messages wakes it once."""

    fcm_endpoint: str = ""
    """FCM HTTP v1 base URL; empty means Google's production endpoint."""
    fcm_token_uri: str = ""
    """OAuth2 token URL; empty means the ``token_uri`` of the credentials file."""
    fcm_credentials_file: Path | None = None
    """Service-account JSON (mounted from the PushPool's credentials Secret)."""
    fcm_ca_file: Path | None = None
    """CA bundle to verify a non-Google FCM endpoint (local provider servers)."""
    apns_endpoint: str = "production"
    """``production``, ``sandbox`` or a URL of an APNs-compatible HTTP/2 server."""
    apns_key_file: Path | None = None
    """The ``.p8`` token-signing key (from the PushPool's credentials Secret)."""
    apns_key_id: str = ""
    """Key ID of ``apns_key_file``."""
    apns_team_id: str = ""
    """Apple developer team ID (the JWT issuer)."""
    apns_topic: str = ""
    """The app's bundle ID (``apns-topic``)."""
    apns_ca_file: Path | None = None
    """CA bundle to verify a non-Apple APNs endpoint (local provider servers)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get(CONFIG_FILE_ENV)
        if not path:
            return init_settings, env_settings
        if not Path(path).is_file():
            raise ValueError(f"{CONFIG_FILE_ENV}={path}: no such file")
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, Path(path))

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("rate_limits")
    @classmethod
    def _known_rate_limits(cls, value: dict[str, float]) -> dict[str, float]:
        known = set(RateLimits.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown rate limits {unknown}; choose from {sorted(known)}")
        negative = sorted(k for k, v in value.items() if v < 0)
        if negative:
            raise ValueError(f"rate limits {negative} must not be negative")
        return value

    @model_validator(mode="after")
    def _lease_terms_fit(self) -> Settings:
        self.lease_terms  # noqa: B018 (raises ValueError when the two do not fit)
        return self

    @property
    def lease_terms(self) -> LeaseTerms:
        """Shard lease timing: renewed every fifth of the lease, a write needs a third."""
        lease = self.shard_lease_s
        return LeaseTerms(
            lease_s=lease, renew_s=lease / 5, skew_s=self.shard_lease_skew_s, grace_s=lease / 3
        )

    @property
    def rates(self) -> RateLimits:
        """The token buckets, defaults replaced by ``rate_limits``."""
        defaults = RateLimits()
        return replace(
            defaults,
            **{
                name: type(getattr(defaults, name))(value)
                for name, value in self.rate_limits.items()
            },
        )

    @field_validator("push_providers")
    @classmethod
    def _known_providers(cls, value: str) -> str:
        names = [n.strip().lower() for n in value.split(",") if n.strip()]
        known = {p.value for p in Provider}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown push providers {unknown}; choose from {sorted(known)}")
        return ",".join(dict.fromkeys(names))

    @property
    def push_provider_list(self) -> list[Provider]:
        """``push_providers`` parsed, in order, without duplicates."""
        return [Provider(n) for n in self.push_providers.split(",") if n]


def up_components(settings: Settings) -> tuple[str, ...]:
    """What ``tidings up`` runs: every component, push only with a provider configured."""
    if settings.push_provider_list:
        return COMPONENTS
    return tuple(c for c in COMPONENTS if c != "push")
