"""Carrying out shard moves planned by ``failover``: one conditional update each.

Shared by the operator's automatic takeover and ``kubectl tidings``. A move whose shard
changed since it was planned (409 Conflict: another region or person moved it first) or
that the CRD's rules refuse (422) is reported, not retried: the caller re-plans from
what is there now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings_operator.failover import Move, ShardView
from tidings_operator.kube import ApiError, Kube
from tidings_operator.models import MessageShard
from tidings_operator.names import MESSAGE_SHARD


def shard_view(shard: MessageShard) -> ShardView:
    return ShardView(
        name=shard.metadata.name,
        home=shard.spec.region,
        index=shard.spec.index,
        owner=shard.spec.owner,
        epoch=shard.spec.epoch,
        resource_version=shard.metadata.resource_version or "",
    )


def shard_views(objects: Iterable[Mapping[str, Any]]) -> list[ShardView]:
    return [shard_view(MessageShard.model_validate(obj)) for obj in objects]


@dataclass
class MoveResult:
    moved: list[Move] = field(default_factory=list)
    refused: list[tuple[Move, str]] = field(default_factory=list)


async def move_shards(kube: Kube, namespace: str, moves: Sequence[Move]) -> MoveResult:
    result = MoveResult()
    for move in moves:
        patch = {
            "metadata": {"resourceVersion": move.resource_version},
            "spec": {"owner": move.to_owner, "epoch": move.epoch},
        }
        try:
            await kube.patch(MESSAGE_SHARD, namespace, move.shard, patch)
        except ApiError as exc:
            if exc.conflict or exc.status == 422 or exc.not_found:
                result.refused.append((move, exc.message))
                continue
            raise
        result.moved.append(move)
    return result
