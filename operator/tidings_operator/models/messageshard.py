"""``MessageShard``: a slice of the user space, its home region, owner and fencing epoch.

A ChatRegion creates its shards once; afterwards ``owner`` and ``epoch`` belong to
failover, which moves a shard by bumping its epoch in an optimistic (resourceVersion)
update, so a stale owner's writes are refused. The API server enforces the fencing
rules below even against a buggy client.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from tidings.core.shardmap import SLOTS, Shard
from tidings_operator.models.base import (
    ApiVersion,
    Condition,
    ObjectMeta,
    RegionName,
    SpecModel,
    StatusModel,
    cel,
    conditions_field,
    immutable,
    validations,
)
from tidings_operator.names import API_VERSION, MESSAGE_SHARD


class MessageShardSpec(SpecModel):
    """Which slots the shard holds, where they live and who serves them now."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.firstSlot <= self.lastSlot", "firstSlot must not exceed lastSlot"),
            cel(
                "self.firstSlot == oldSelf.firstSlot && self.lastSlot == oldSelf.lastSlot",
                "the slot range is immutable",
            ),
            cel(
                "self.owner == oldSelf.owner || self.epoch > oldSelf.epoch",
                "moving a shard to another owner must bump its epoch (fencing)",
            ),
        )
    )

    region: RegionName = Field(json_schema_extra=immutable("region"))
    """The home region (whose ChatRegion created the shard)."""
    index: int = Field(ge=0, lt=SLOTS, json_schema_extra=immutable("index"))
    """Position among the home region's shards."""
    first_slot: int = Field(ge=0, lt=SLOTS)
    last_slot: int = Field(ge=0, lt=SLOTS)
    owner: RegionName
    """The region serving the shard now: the home region, or a peer after failover."""
    epoch: int = Field(
        default=1,
        ge=1,
        json_schema_extra=validations(cel("self >= oldSelf", "epoch never decreases")),
    )
    """Fencing epoch, bumped on every move; writes stamped with an older one are
    refused."""

    @model_validator(mode="after")
    def _ordered(self) -> MessageShardSpec:
        if self.first_slot > self.last_slot:
            raise ValueError("firstSlot must not exceed lastSlot")
        return self


class MessageShardStatus(StatusModel):
    """What the owner region acknowledged."""

    observed_generation: int | None = None
    """The ``metadata.generation`` this status describes."""
    phase: Literal["Pending", "Serving", "Fencing", "Moving", "Invalid"] | None = None
    """``Invalid``: ``spec.owner`` is no known region; the slots stay with ``owner``."""
    conditions: list[Condition] = conditions_field()
    owner: str = ""
    """The region that acknowledged ownership (equals ``spec.owner`` once a move is
    complete)."""
    epoch: int = Field(default=0, ge=0)
    """The epoch the owner serves under."""
    consumer_lag: int = Field(default=0, ge=0)
    """Records of the shard's recipients not yet delivered from Kafka."""


class MessageShard(StatusModel):
    """A hash-slot range of the user space with a home region, an owner and an epoch."""

    api_version: ApiVersion = API_VERSION
    kind: Literal["MessageShard"] = MESSAGE_SHARD
    metadata: ObjectMeta
    spec: MessageShardSpec
    status: MessageShardStatus | None = None

    def as_core_shard(self) -> Shard:
        """The platform's value of this shard (``spec`` is the routing truth: a move
        bumps the epoch there first)."""
        spec = self.spec
        return Shard(
            name=self.metadata.name,
            first_slot=spec.first_slot,
            last_slot=spec.last_slot,
            home_region=spec.region,
            owner_region=spec.owner,
            epoch=spec.epoch,
        )
