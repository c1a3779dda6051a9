"""``PushPool``: the push workers of one region for one provider (FCM or APNs).

The settings mirror the platform's ``TIDINGS_PUSH_*``, ``TIDINGS_FCM_*`` and
``TIDINGS_APNS_*`` (a unit test keeps bounds and defaults in step with ``Settings``).
``replicas`` is exposed through the scale subresource, so ``kubectl scale`` sets it;
with ``autoscaling`` the operator scales the workers on the push topic's consumer lag
instead, between the bounds given.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from tidings_operator.models.base import (
    ApiVersion,
    Condition,
    ObjectMeta,
    Phase,
    Port,
    RegionName,
    ResourceRequirements,
    SecretKeySelector,
    SpecModel,
    StatusModel,
    cel,
    conditions_field,
    immutable,
    validations,
)
from tidings_operator.models.chatregion import Replicas
from tidings_operator.names import API_VERSION, PUSH_POOL

Provider = Literal["fcm", "apns"]


class FcmSpec(SpecModel):
    """Firebase Cloud Messaging (HTTP v1) settings."""

    endpoint: str = Field(default="", max_length=2048)
    """FCM base URL; empty means Google's production endpoint."""
    token_uri: str = Field(default="", max_length=2048)
    """OAuth2 token URL; empty means the ``token_uri`` of the credentials file."""
    ca_secret: SecretKeySelector | None = None
    """A CA bundle to verify a non-Google endpoint (test and staging servers)."""


class ApnsSpec(SpecModel):
    """Apple Push Notification service (token-based HTTP/2) settings."""

    endpoint: str = Field(
        default="production", pattern=r"^(production|sandbox|https://.+)$", max_length=2048
    )
    """``production``, ``sandbox`` or the URL of an APNs-compatible server."""
    key_id: str = Field(min_length=1, max_length=64)
    """Key ID of the ``.p8`` signing key in ``credentialsSecret``."""
    team_id: str = Field(min_length=1, max_length=64)
    """Apple developer team ID (the token's issuer)."""
    topic: str = Field(min_length=1, max_length=255)
    """The app's bundle ID."""
    ca_secret: SecretKeySelector | None = None
    """A CA bundle to verify a non-Apple endpoint (test and staging servers)."""


class PushAutoscaling(SpecModel):
    """Scale the pool on the push topic's consumer lag."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas")
        )
    )

    min_replicas: Replicas = 1
    max_replicas: Replicas
    lag_per_replica: int = Field(default=1000, ge=1)
    """Push jobs waiting per worker the operator aims for."""

    @model_validator(mode="after")
    def _bounds_in_order(self) -> PushAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class PushPoolSpec(SpecModel):
    """The desired state of a push pool."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.provider != 'apns' || has(self.apns)", "provider apns needs the apns section"
            ),
            cel("self.provider != 'apns' || !has(self.fcm)", "provider apns takes no fcm section"),
            cel("self.provider != 'fcm' || !has(self.apns)", "provider fcm takes no apns section"),
        )
    )

    region: RegionName = Field(json_schema_extra=immutable("region"))
    """The ChatRegion (in this namespace) whose push topic the pool consumes."""
    provider: Provider = Field(json_schema_extra=immutable("provider"))
    image: str | None = Field(default=None, min_length=1, max_length=512)
    """The platform image; default: the ChatRegion's."""
    credentials_secret: SecretKeySelector
    """The provider credentials: the service-account JSON (FCM) or the ``.p8`` key
    (APNs), mounted read-only into the workers."""
    rate: float = Field(default=500.0, gt=0)
    """Pushes per second, shared by every worker of the pool (a Redis token bucket)."""
    burst: int = Field(default=1000, ge=1)
    """Pushes allowed back to back above ``rate``."""
    concurrency: int = Field(default=64, ge=1, le=4096)
    """Provider requests in flight per worker."""
    max_attempts: int = Field(default=5, ge=1, le=50)
    """Sends per push (first try included) while the provider asks to retry."""
    backoff_base_seconds: float = Field(default=0.5, gt=0)
    """Retry n waits up to ``base * 2**n`` seconds; a provider's Retry-After wins."""
    collapse_seconds: float = Field(default=10.0, ge=0)
    """At most one push per device in this window."""
    fcm: FcmSpec | None = None
    apns: ApnsSpec | None = None
    replicas: int = Field(default=1, ge=0, le=1000)
    """Workers when ``autoscaling`` is not set (``kubectl scale`` writes it)."""
    autoscaling: PushAutoscaling | None = None
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    port: Port | None = None
    """The workers' health port (``TIDINGS_PORT``); default 8080. The pods run where
    and on the network the region's ``pods`` say: with ``hostNetwork`` give the pool
    ports no component of the region uses."""
    ops_port: Port | None = None
    """The operations port (``TIDINGS_OPS_PORT``: ``/metrics``); default 9090."""

    @model_validator(mode="after")
    def _provider_section(self) -> PushPoolSpec:
        if self.provider == "apns" and self.apns is None:
            raise ValueError("provider apns needs the apns section")
        other = self.apns if self.provider == "fcm" else self.fcm
        if other is not None:
            raise ValueError(f"provider {self.provider} takes no section of the other provider")
        return self


class PushPoolStatus(StatusModel):
    """What the operator last observed."""

    observed_generation: int | None = None
    """The ``metadata.generation`` this status describes."""
    phase: Phase | None = None
    """A one-word summary of the conditions."""
    conditions: list[Condition] = conditions_field()
    replicas: int = Field(default=0, ge=0)
    """Worker pods that exist (the scale subresource's status)."""
    ready_replicas: int = Field(default=0, ge=0)
    selector: str = ""
    """The workers' label selector, for the scale subresource."""
    consumer_lag: int = Field(default=0, ge=0)
    """Push jobs waiting in the region's push topic."""


class PushPool(StatusModel):
    """Push workers of a region for one provider."""

    api_version: ApiVersion = API_VERSION
    kind: Literal["PushPool"] = PUSH_POOL
    metadata: ObjectMeta
    spec: PushPoolSpec
    status: PushPoolStatus | None = None
