"""``ChatRegion``: one region of the platform and everything it runs.

The region's name is the resource's ``metadata.name`` (as a Strimzi ``Kafka`` cluster's
is): it names the Kafka topics, the Cassandra datacenter by default, the shards and
every child object, and Kubernetes already makes it immutable.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from tidings.config import DEFAULT_SAMPLE_RATIO
from tidings.core.shardmap import SLOTS
from tidings_operator.models.base import (
    ApiVersion,
    ComponentStatus,
    Condition,
    ObjectMeta,
    Phase,
    PodPlacement,
    Port,
    RegionName,
    ResourceRequirements,
    SecretKey,
    SecretKeySelector,
    SecretName,
    SpecModel,
    StatusModel,
    cel,
    conditions_field,
    immutable,
    list_map,
    validations,
)
from tidings_operator.names import (
    API_VERSION,
    CHAT_REGION,
    OPS_PORT,
    REGION_NAME_PATTERN,
    SETTINGS_PORT,
)

REGION_COMPONENTS = ("gateway", "router", "media", "presence", "delivery", "analytics")
"""The platform components a ChatRegion runs (``push`` runs in PushPools)."""
SERVED_COMPONENTS = ("gateway", "router", "media")
"""Components with client-facing HTTP routes, hence a Service."""

DATACENTER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A Cassandra datacenter name, as the platform's Cassandra engine accepts it."""
KEYSPACE_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"

Replicas = Annotated[int, Field(ge=1, le=1000)]


class Autoscaling(SpecModel):
    """A HorizontalPodAutoscaler on CPU. While it is set the Deployment's replica count
    belongs to the autoscaler and ``replicas`` is ignored."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas")
        )
    )

    min_replicas: Replicas = 1
    max_replicas: Replicas
    target_cpu_utilization_percentage: int = Field(
        default=70, ge=1, le=100, alias="targetCPUUtilizationPercentage"
    )
    """Average CPU use, in percent of the requests, the autoscaler aims for (spelled
    as in a HorizontalPodAutoscaler)."""

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class ComponentSpec(SpecModel):
    """How many pods of one component run, and how big they are."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.autoscaling) || "
                "(has(self.resources.requests) && 'cpu' in self.resources.requests)",
                "autoscaling on CPU needs resources.requests.cpu (utilization is a share of it)",
            )
        )
    )

    replicas: int = Field(default=1, ge=0, le=1000)
    """Pods to run when ``autoscaling`` is not set; 0 stops the component."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    autoscaling: Autoscaling | None = None
    port: Port | None = None
    """The client port the pods listen on (``TIDINGS_PORT``); default 8080. Only
    needed apart from the default with ``pods.hostNetwork``, where components share
    their node's ports."""
    ops_port: Port | None = None
    """The operations port (``TIDINGS_OPS_PORT``: ``/metrics``); default 9090."""

    @model_validator(mode="after")
    def _cpu_request_to_scale_on(self) -> ComponentSpec:
        if self.autoscaling is not None and "cpu" not in self.resources.requests:
            raise ValueError(
                "autoscaling on CPU needs resources.requests.cpu (utilization is a share of it)"
            )
        return self


class GatewaySpec(ComponentSpec):
    """The client edge (REST + WebSocket). Two replicas by default, so a pod loss or a
    node drain never takes every socket of the region down at once."""

    replicas: int = Field(default=2, ge=0, le=1000)
    """Pods to run when ``autoscaling`` is not set."""
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """How clients reach the gateway; ``LoadBalancer`` publishes its address in
    ``status.gatewayEndpoint``."""
    service_annotations: dict[str, str] = Field(default_factory=dict, max_length=64)
    """Annotations of the gateway Service (load balancer settings of the cloud)."""


class ComponentsSpec(SpecModel):
    """Per component: replicas, resources, autoscaling."""

    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    router: ComponentSpec = Field(default_factory=ComponentSpec)
    media: ComponentSpec = Field(default_factory=ComponentSpec)
    presence: ComponentSpec = Field(default_factory=ComponentSpec)
    delivery: ComponentSpec = Field(default_factory=ComponentSpec)
    analytics: ComponentSpec = Field(default_factory=ComponentSpec)

    def of(self, component: str) -> ComponentSpec:
        if component not in REGION_COMPONENTS:
            raise KeyError(f"{component!r} is not a ChatRegion component")
        spec: ComponentSpec = getattr(self, component)
        return spec


class KafkaSpec(SpecModel):
    """The Kafka cluster and the region's four topics: ``tidings.<region>.deliveries``,
    ``.receipts``, ``.push`` and ``.analytics``."""

    bootstrap_servers: str = Field(min_length=1, max_length=2048, pattern=r"^[^,\s]+(,[^,\s]+)*$")
    """Comma-separated ``host:port`` list."""
    partitions: int = Field(
        default=8,
        ge=1,
        le=1024,
        json_schema_extra=validations(
            cel("self >= oldSelf", "partitions can only grow: Kafka cannot remove partitions")
        ),
    )
    """Partitions of each topic. Growing remaps recipients to partitions, so per-recipient
    order is only guaranteed again once in-flight messages are delivered."""
    replication_factor: int = Field(default=3, ge=1, le=7)
    """Replicas of each partition. Changing it on an existing topic is refused (status
    says why); reassign partitions with Kafka's tools, then update this field."""
    topic_config: dict[str, str] = Field(default_factory=dict, max_length=64)
    """Topic-level Kafka configs, e.g. ``retention.ms: "604800000"``. With three or more
    replicas ``min.insync.replicas`` defaults to 2, so an acknowledged send survives the
    loss of a broker."""


class CassandraCredentials(SpecModel):
    """A Secret with the Cassandra role's user name and password."""

    name: SecretName
    username_key: SecretKey = "username"
    password_key: SecretKey = "password"


class CassandraSpec(SpecModel):
    """The Cassandra cluster: one datacenter per region, keyspace with
    NetworkTopologyStrategy."""

    contact_points: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        min_length=1, max_length=32
    )
    """Hosts to connect to first."""
    port: int = Field(default=9042, ge=1, le=65535)
    datacenter: str | None = Field(default=None, pattern=DATACENTER_PATTERN, max_length=64)
    """This region's datacenter (queries run there at LOCAL_QUORUM); default: the
    region's name."""
    keyspace: str = Field(
        default="tidings",
        pattern=KEYSPACE_PATTERN,
        max_length=48,
        json_schema_extra=immutable("keyspace"),
    )
    """The keyspace shared by every region; immutable, data never moves keyspaces."""
    replication: dict[str, Annotated[int, Field(ge=1, le=32)]] = Field(
        default_factory=dict, max_length=32
    )
    """Replicas per datacenter, e.g. ``{us-east: 3, eu-west: 3}``; every peered region
    lists the same map. Empty means one replica in this region's datacenter. A new
    datacenter is added with ALTER KEYSPACE; removing one is refused."""
    credentials_secret: CassandraCredentials | None = None
    """Without it the platform connects without authentication."""

    @model_validator(mode="after")
    def _datacenter_names(self) -> CassandraSpec:
        # Map keys cannot carry a schema pattern in a CRD (and a CEL rule over them
        # would be costly), so only the operator checks them.
        bad = [dc for dc in self.replication if not re.fullmatch(DATACENTER_PATTERN, dc)]
        if bad:
            raise ValueError(f"replication names invalid datacenters {bad}")
        return self


class RedisSpec(SpecModel):
    """Redis for presence, device channels, rate limits and dedupe keys, shared by every
    process of the region."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.url) != has(self.urlSecretRef)", "set exactly one of url, urlSecretRef")
        )
    )

    url: str | None = Field(default=None, pattern=r"^rediss?://", max_length=2048)
    """``redis://host:6379/0``; use ``urlSecretRef`` when it carries a password."""
    url_secret_ref: SecretKeySelector | None = None
    """A Secret key holding the URL."""

    @model_validator(mode="after")
    def _one_source(self) -> RedisSpec:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("set exactly one of url, urlSecretRef")
        return self


class S3Credentials(SpecModel):
    """A Secret with the S3 access key pair."""

    name: SecretName
    access_key_key: SecretKey = "accessKey"
    secret_key_key: SecretKey = "secretKey"


class S3Spec(SpecModel):
    """The S3-compatible store of encrypted media."""

    endpoint: str = Field(default="", max_length=2048)
    """S3 API URL; empty means AWS for ``region``."""
    public_endpoint: str = Field(default="", max_length=2048)
    """URL clients reach the store at, when it differs from ``endpoint``."""
    region: str = Field(default="us-east-1", min_length=1, max_length=64)
    bucket: str = Field(min_length=3, max_length=63)
    credentials_secret: S3Credentials | None = None
    """Without it the SDK's default chain applies (workload identity, instance role)."""


class SlotRange(SpecModel):
    """A contiguous range of the user space's hash slots (both ends included)."""

    model_config = ConfigDict(
        json_schema_extra=validations(cel("self.first <= self.last", "first must not exceed last"))
    )

    first: int = Field(default=0, ge=0, le=SLOTS - 1)
    last: int = Field(default=SLOTS - 1, ge=0, le=SLOTS - 1)

    @model_validator(mode="after")
    def _ordered(self) -> SlotRange:
        if self.first > self.last:
            raise ValueError("first must not exceed last")
        return self

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class Peer(SpecModel):
    """Another region this one exchanges messages with and may take shards over from."""

    name: RegionName
    """The peer's region name (its ChatRegion's name)."""
    gateway_endpoint: str = Field(default="", max_length=2048)
    """The peer's gateway URL: its ``/readyz`` is probed as part of its data plane."""
    kafka_bootstrap_servers: str = Field(default="", max_length=2048)
    """The peer's Kafka (``host:port,...``): one broker answering ``ApiVersions`` counts
    as reachable.
    A peer whose gateway and Kafka are both unreachable is down as seen from here."""
    kubeconfig_secret: str = Field(
        default="",
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
    )
    """A Secret in this namespace whose key ``kubeconfig`` reaches the peer's own
    cluster: its heartbeat, what it sees of the others, and its shards are read there
    (the identity needs ``get`` on ``leases`` and ``list`` on ``messageshards`` in the
    peer's namespace). Empty: the peer runs in this cluster."""
    namespace: str = Field(default="", max_length=63, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$")
    """The peer's namespace in its cluster; empty: the same as this region's."""


class FailoverSpec(SpecModel):
    """Moving this region's shards to peers when it fails."""

    policy: Literal["Manual", "Automatic"] = "Manual"
    """``Manual``: only ``kubectl tidings failover`` moves shards. ``Automatic``: once a
    majority of the regions have seen a peer's data plane unreachable for
    ``detectionWindowSeconds``, the operators fence it and take its shards over (never
    with two regions: no majority can observe the other). Failback is always manual."""
    detection_window_seconds: int = Field(default=30, ge=5, le=3600)
    """How long a peer's data plane must be seen unreachable before it counts as failed."""


class GlobalDnsSpec(SpecModel):
    """One global gateway name for the whole deployment, kept in an ExternalDNS
    ``DNSEndpoint`` (``externaldns.k8s.io/v1alpha1``) in this region's namespace: a
    record per healthy region, each with the region as its set identifier (so a DNS
    provider's routing policy can answer with the nearest), withdrawn while the region
    is failed."""

    hostname: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z][-a-z0-9]{0,61}[a-z0-9]$",
    )
    """The global name clients use, e.g. ``chat.tidings.example``."""
    ttl_seconds: int = Field(default=30, ge=5, le=86_400)
    """Seconds resolvers may keep an answer: how long a withdrawn region still gets
    new clients."""


class TracingSpec(SpecModel):
    """Traces of the message path (OpenTelemetry spans, OTLP over HTTP): a span per hop
    of a sampled send, from the sender's gateway to the recipient's ack."""

    otlp_endpoint: str = Field(default="", max_length=2048, pattern=r"^(https?://\S+)?$")
    """An OpenTelemetry collector's OTLP/HTTP base URL (``TIDINGS_OTLP_ENDPOINT``), e.g.
    ``http://otel-collector.observability:4318``. Empty: no tracing."""
    sample_ratio: float = Field(default=DEFAULT_SAMPLE_RATIO, ge=0.0, le=1.0)
    """Share of sends traced, decided when a send is accepted
    (``TIDINGS_TRACE_SAMPLE_RATIO``); 0 starts no trace."""


class ChatRegionSpec(SpecModel):
    """The desired state of a region."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.shards <= self.slotRange.last - self.slotRange.first + 1",
                "shards must not exceed the number of slots in slotRange",
            )
        )
    )

    image: str = Field(min_length=1, max_length=512)
    """The platform image (runs ``tidings serve <component>``)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    components: ComponentsSpec = Field(default_factory=ComponentsSpec)
    pods: PodPlacement = Field(default_factory=PodPlacement)
    kafka: KafkaSpec
    cassandra: CassandraSpec
    redis: RedisSpec
    s3: S3Spec
    slot_range: SlotRange = Field(
        default_factory=SlotRange, json_schema_extra=immutable("slotRange")
    )
    """The hash slots this region is home to; regions of one deployment split the
    slots 0..1023 between them. Immutable: changing it would move users' homes."""
    shards: int = Field(default=8, ge=1, le=SLOTS, json_schema_extra=immutable("shards"))
    """MessageShards cut from ``slotRange``, the unit of failover. Immutable: a shard's
    slot range is what its owner and fencing epoch are about, and a new count would
    re-cut every range; resharding needs a fenced protocol of its own."""
    peers: list[Peer] = Field(
        default_factory=list, max_length=16, json_schema_extra=list_map("name")
    )
    """Regions this one exchanges messages with, keyed by name."""
    failover: FailoverSpec = Field(default_factory=FailoverSpec)
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What deleting the ChatRegion does to its data: ``Retain`` keeps topics and the
    keyspace, ``Delete`` deletes the topics and drops this region's datacenter from the
    keyspace (the keyspace itself when no other datacenter remains)."""
    public_url: str = Field(default="", max_length=2048)
    """Base of absolute URLs handed to clients (``TIDINGS_PUBLIC_URL``)."""
    dns: GlobalDnsSpec | None = None
    """A global gateway name with a record per healthy region (needs ExternalDNS's
    ``DNSEndpoint`` CRD installed); the targets are the hosts of this region's
    ``publicUrl`` and its peers' ``gatewayEndpoint``."""
    dev_mode: bool = False
    """Log one-time codes instead of sending SMS. Never in production."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # No default object: a region that never sets it reads the same to an operator that
    # predates the field (models refuse unknown fields) while CRDs and operator upgrade.
    tracing: TracingSpec | None = None
    """Where the region's pods send traces of the message path, and how many; absent:
    no tracing."""

    @model_validator(mode="after")
    def _enough_slots(self) -> ChatRegionSpec:
        if self.shards > self.slot_range.size:
            raise ValueError("shards must not exceed the number of slots in slotRange")
        if self.pods.host_network:
            clashes = host_port_clashes(self.components)
            if clashes:
                raise ValueError(
                    "with pods.hostNetwork every component needs ports of its own: "
                    + "; ".join(clashes)
                )
        return self


def host_port_clashes(components: ComponentsSpec) -> list[str]:
    """Ports two running components would both listen on, as ``port 8080: gateway
    http, router http`` (a component with no replicas holds none)."""
    holders: dict[int, list[str]] = {}
    for name in REGION_COMPONENTS:
        spec = components.of(name)
        if spec.replicas == 0 and spec.autoscaling is None:
            continue
        holders.setdefault(spec.port or SETTINGS_PORT, []).append(f"{name} port")
        holders.setdefault(spec.ops_port or OPS_PORT, []).append(f"{name} opsPort")
    return [f"{port}: {', '.join(names)}" for port, names in holders.items() if len(names) > 1]


class PeerStatus(StatusModel):
    """How this region sees one of its peers (the failover detector's verdict)."""

    name: str
    health: Literal["Healthy", "Suspect", "Failed", "OperatorDown", "Unknown"]
    since: datetime
    """When the peer entered this state (Suspect and Failed count from the first failed
    check)."""
    reason: str = ""
    message: str = ""
    votes: int = 0
    """Regions that saw its data plane unreachable for the whole detection window."""
    votes_needed: int = 0
    """Votes that make it Failed: a majority of all the regions."""


class FailoverDecision(StatusModel):
    """What the failover loop last decided, and why."""

    action: Literal["None", "TakeOver", "NoQuorum", "Manual"]
    reason: str
    message: str = ""
    time: datetime


class FailoverStatus(StatusModel):
    """The failover loop's own block: written by it alone, never by the reconcile."""

    regions: int = 0
    """Regions of the deployment (this one and its peers)."""
    majority: int = 0
    """Regions that must observe a peer down before it is Failed."""
    peers: list[PeerStatus] = Field(default_factory=list, json_schema_extra=list_map("name"))
    """Health of each peer, as the failover detector last judged it."""
    decision: FailoverDecision | None = None


class ChatRegionStatus(StatusModel):
    """What the operator last observed."""

    observed_generation: int | None = None
    """The ``metadata.generation`` this status describes."""
    phase: Phase | None = None
    """A one-word summary of the conditions."""
    conditions: list[Condition] = conditions_field()
    components: dict[str, ComponentStatus] = Field(default_factory=dict)
    """Per component: ready and desired pods."""
    components_ready: str = ""
    """``<ready>/<total>`` components with every desired pod ready."""
    gateway_endpoint: str = ""
    """Where clients connect (the gateway Service's address)."""
    owned_shards: int = 0
    """MessageShards this region owns now (its own and any taken over)."""
    failover: FailoverStatus | None = None
    """Peers' verdicts and the last failover decision (regions with peers)."""


class ChatRegion(StatusModel):
    """A Tidings region: its services, Kafka topics, Cassandra keyspace and shards."""

    api_version: ApiVersion = API_VERSION
    kind: Literal["ChatRegion"] = CHAT_REGION
    metadata: ObjectMeta
    spec: ChatRegionSpec
    status: ChatRegionStatus | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatRegion:
        if not re.fullmatch(REGION_NAME_PATTERN, self.metadata.name):
            raise ValueError(f"region name {self.metadata.name!r} must match {REGION_NAME_PATTERN}")
        if any(peer.name == self.metadata.name for peer in self.spec.peers):
            raise ValueError("a region cannot be its own peer")
        replication = self.spec.cassandra.replication
        if replication and self.datacenter not in replication:
            raise ValueError(
                f"cassandra.replication must include this region's datacenter {self.datacenter}"
            )
        return self

    @property
    def region(self) -> str:
        return self.metadata.name

    @property
    def datacenter(self) -> str:
        return self.spec.cassandra.datacenter or self.metadata.name

    @property
    def replication(self) -> dict[str, int]:
        """The keyspace's replicas per datacenter, the default filled in."""
        return dict(self.spec.cassandra.replication) or {self.datacenter: 1}
