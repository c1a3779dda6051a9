"""Carrying out shard moves planned by ``failover``: one conditional update each.

Shared by the operator's automatic takeover and ``kubectl tidings``. A move whose shard
changed since it was planned (409 Conflict: another region or person moved it first) or
that the CRD's rules refuse (422) is reported, not retried: the caller re-plans from
what is there now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tidings.core.shardmap import SHARD_MAP_FILE_NAME, ShardMapError, parse_shard_map
from tidings_operator.failover import Move, ShardView
from tidings_operator.kube import ApiError, Kube
from tidings_operator.models import MessageShard
from tidings_operator.names import API_VERSION, MESSAGE_SHARD, REGION_LABEL, shard_map_config_map
from tidings_operator.resources.meta import owner_reference
from tidings_operator.shard_merge import ADOPTED_BY_LABEL


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


def planning_views(
    local: Sequence[MessageShard], merged: Sequence[MessageShard]
) -> list[ShardView]:
    """What moves are planned from: every shard at its merged owner and epoch, fenced on
    this cluster's object of it (its resourceVersion); a shard whose object is only in a
    peer's cluster has none, and ``move_shards`` copies it here."""
    here = {s.metadata.name: s.metadata.resource_version for s in local}
    return [replace(shard_view(s), resource_version=here.get(s.metadata.name, "")) for s in merged]


@dataclass
class MoveResult:
    moved: list[Move] = field(default_factory=list)
    refused: list[tuple[Move, str]] = field(default_factory=list)


def adopted_shard(shard: MessageShard, move: Move, adopter: Mapping[str, Any]) -> dict[str, Any]:
    """The copy a region makes of a peer's shard it takes over when the shard's own
    object is in the peer's cluster (which may be gone): same name and slots, the new
    owner and epoch, owned by the adopting ChatRegion (deleted with it)."""
    meta = adopter["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": MESSAGE_SHARD,
        "metadata": {
            "name": shard.metadata.name,
            "namespace": meta["namespace"],
            "labels": {REGION_LABEL: shard.spec.region, ADOPTED_BY_LABEL: move.to_owner},
            # Not as controller: the adopter's reconcile does not count it a child of
            # its own (nor prune it); it goes with the adopter by garbage collection.
            "ownerReferences": [
                owner_reference(
                    api_version=adopter["apiVersion"],
                    kind=adopter["kind"],
                    name=meta["name"],
                    uid=meta.get("uid", ""),
                    controller=False,
                )
            ],
        },
        "spec": {
            "region": shard.spec.region,
            "index": shard.spec.index,
            "firstSlot": shard.spec.first_slot,
            "lastSlot": shard.spec.last_slot,
            "owner": move.to_owner,
            "epoch": move.epoch,
        },
    }


async def move_shards(
    kube: Kube,
    namespace: str,
    moves: Sequence[Move],
    *,
    elsewhere: Mapping[str, MessageShard] | None = None,
    adopter: Mapping[str, Any] | None = None,
) -> MoveResult:
    """Each move one conditional update of the shard's object here; a shard whose object
    is only in a peer's cluster (``elsewhere``, planned with no resourceVersion) gets a
    copy here, owned by ``adopter``, created only if none exists yet."""
    result = MoveResult()
    for move in moves:
        if not move.resource_version and elsewhere and move.shard in elsewhere:
            if adopter is None:
                raise ValueError("a shard of another cluster needs the adopting ChatRegion")
            try:
                await kube.create(adopted_shard(elsewhere[move.shard], move, adopter))
            except ApiError as exc:
                if exc.conflict or exc.status == 422:
                    result.refused.append((move, exc.message))
                    continue
                raise
            result.moved.append(move)
            continue
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


async def published_owners(
    kube: Kube, namespace: str, regions: Iterable[str]
) -> dict[str, tuple[str, int]]:
    """Shard -> (owner, epoch) at the highest epoch the shard maps of ``regions`` publish."""
    found: dict[str, tuple[str, int]] = {}
    for region in regions:
        config_map = await kube.get("ConfigMap", namespace, shard_map_config_map(region))
        text = ((config_map or {}).get("data") or {}).get(SHARD_MAP_FILE_NAME)
        if not text:
            continue
        try:
            shard_map = parse_shard_map(text, region)
        except ShardMapError:
            continue  # the region's status says so; its map decides nothing here
        for shard in shard_map.shards:
            if shard.epoch > found.get(shard.name, ("", 0))[1]:
                found[shard.name] = (shard.owner_region, shard.epoch)
    return found
