"""Shared pieces of the custom resource models.

Every model is camelCase on the wire and snake_case in Python, frozen, and documented by
attribute docstrings, which become the CRD's field descriptions. Rules the API server
enforces with CEL (``x-kubernetes-validations``) are attached with ``validations``;
rules that need no history (``min <= max``) are checked by pydantic as well, so the
operator refuses the same objects the API server does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict, JsonValue

from tidings_operator.names import API_VERSION, OLD_API_VERSION, REGION_NAME_PATTERN


def _config(extra: Literal["forbid", "ignore"]) -> ConfigDict:
    return ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        frozen=True,
        extra=extra,
    )


def _current_api_version(value: Any) -> Any:
    """A body read at the old version is the same resource: the served versions share
    one schema (``conversion: None``), so only the ``apiVersion`` string differs."""
    return API_VERSION if value == OLD_API_VERSION else value


ApiVersion = Annotated[Literal["tidings.dev/v1beta1"], BeforeValidator(_current_api_version)]
"""``apiVersion`` of a custom resource, read at either served version and held as the
current one (so owner references and applied children always name the current one)."""


class SpecModel(BaseModel):
    """A part of a spec. Unknown fields are errors: the API server prunes what the CRD
    does not know, so an unknown field here means a typo in an example or a test."""

    model_config = _config("forbid")


class StatusModel(BaseModel):
    """A part of a status or of metadata, read back from the cluster: unknown fields are
    ignored, so a status written by a newer operator still parses."""

    model_config = _config("ignore")


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry. ``field_path`` (e.g.
    ``.spec.cassandra.replication``) is the field the API server's error names: a rule
    on the root needs it, or the error reads ``<nil>: Invalid value: "object"``."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: JsonDict) -> JsonDict:
    """``json_schema_extra`` attaching CEL rules to a field or a model."""
    entries: list[JsonValue] = [*rules]
    return {"x-kubernetes-validations": entries}


def immutable(what: str) -> JsonDict:
    """A transition rule: the field keeps the value it was created with."""
    return validations(cel("self == oldSelf", f"{what} is immutable"))


def list_map(*keys: str) -> JsonDict:
    """A list merged by key (server-side apply and strategic merge): a list of named
    objects, as the API conventions prefer over maps."""
    key_list: list[JsonValue] = [*keys]
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": key_list}


def _quantity_text(value: Any) -> Any:
    # YAML users write ``cpu: 1``; Kubernetes accepts a number or a string, we keep text.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


QUANTITY_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$"
"""A Kubernetes resource quantity: ``500m``, ``1.5``, ``2Gi``, ``1e3``."""

Quantity = Annotated[
    str,
    BeforeValidator(_quantity_text),
    Field(pattern=QUANTITY_PATTERN),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

RegionName = Annotated[str, Field(pattern=REGION_NAME_PATTERN, max_length=40)]
"""A region (a ChatRegion's name): lower-case letters, digits and dashes."""

SecretName = Annotated[str, Field(min_length=1, max_length=253)]
SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]


class SecretKeySelector(SpecModel):
    """One key of a Secret in the resource's namespace."""

    name: SecretName
    """The Secret's name."""
    key: SecretKey
    """The key within the Secret."""


class ResourceRequirements(SpecModel):
    """CPU and memory of each container, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Resources the scheduler reserves, e.g. ``cpu: 500m``, ``memory: 512Mi``."""
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Hard limits; a container over its memory limit is killed."""


Port = Annotated[int, Field(ge=1, le=65535)]


class Toleration(SpecModel):
    """A toleration of a node taint, as in a Pod spec."""

    key: str = Field(default="", max_length=316)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = Field(default="", max_length=63)
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: int | None = None
    """How long a ``NoExecute`` taint is tolerated; unset: for ever."""


class PodPlacement(SpecModel):
    """Where the platform's pods run and on which network."""

    host_network: bool = False
    """Run the pods on their node's network (no pod network, e.g. a node whose only
    reachable network is loopback). Each component then needs ports of its own: see
    ``components.<name>.port`` and ``opsPort``; a component's pods on one node share its
    client port (``SO_REUSEPORT``), and all but the first serve metrics on a free port."""
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Node labels the pods require."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints the pods tolerate."""


class ObjectMeta(StatusModel):
    """The parts of ``metadata`` the operator reads."""

    name: str
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A status condition, shaped like ``metav1.Condition``."""

    type: str = Field(max_length=316)
    """``Ready``, ``Progressing``, ``Degraded`` or ``Paused``."""
    status: ConditionStatus
    reason: str = Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """A CamelCase word for machines, e.g. ``PartitionsCannotShrink``."""
    message: str = Field(default="", max_length=32768)
    """What happened, for humans."""
    last_transition_time: datetime
    """When ``status`` last changed."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The ``metadata.generation`` this condition was computed for."""


class ComponentStatus(StatusModel):
    ready: int = Field(default=0, ge=0)
    """Pods passing their readiness probe."""
    desired: int = Field(default=0, ge=0)
    """Pods wanted (by ``replicas`` or the autoscaler)."""


Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Conflict", "Paused", "Deleting"]
"""A one-word summary of the conditions (ChatRegion and PushPool)."""


def conditions_field() -> Any:
    """The ``status.conditions`` field: a list keyed by ``type``."""
    return Field(default_factory=list, json_schema_extra=list_map("type"))
