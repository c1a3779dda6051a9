"""The custom resources as pydantic models (the one source of the CRD schemas).

``parse`` turns a resource body (from kopf or a YAML file) into its model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Discriminator, TypeAdapter

from tidings_operator.models.base import Condition, ObjectMeta, SecretKeySelector
from tidings_operator.models.chatregion import (
    REGION_COMPONENTS,
    SERVED_COMPONENTS,
    ChatRegion,
    ChatRegionSpec,
    ChatRegionStatus,
    ComponentSpec,
)
from tidings_operator.models.messageshard import (
    MessageShard,
    MessageShardSpec,
    MessageShardStatus,
)
from tidings_operator.models.pushpool import PushPool, PushPoolSpec, PushPoolStatus

Resource = ChatRegion | MessageShard | PushPool

_RESOURCE: TypeAdapter[Resource] = TypeAdapter(Annotated[Resource, Discriminator("kind")])


def parse(body: Mapping[str, Any]) -> Resource:
    """The model of a resource body, picked by its ``kind``."""
    return _RESOURCE.validate_python(dict(body))


__all__ = [
    "REGION_COMPONENTS",
    "SERVED_COMPONENTS",
    "ChatRegion",
    "ChatRegionSpec",
    "ChatRegionStatus",
    "ComponentSpec",
    "Condition",
    "MessageShard",
    "MessageShardSpec",
    "MessageShardStatus",
    "ObjectMeta",
    "PushPool",
    "PushPoolSpec",
    "PushPoolStatus",
    "Resource",
    "SecretKeySelector",
    "parse",
]
