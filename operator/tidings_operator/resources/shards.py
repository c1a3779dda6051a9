"""A region's MessageShards and the shard map the platform routes by.

The slot range is cut exactly as ``tidings.core.shardmap.single_region`` cuts the whole
space, so a one-region deployment gets the very shards the platform builds for itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tidings.core.shardmap import SHARD_MAP_FILE_NAME, Shard, ShardMap, shard_map_document
from tidings_operator.models import ChatRegion
from tidings_operator.names import (
    API_VERSION,
    MESSAGE_SHARD,
    REGION_LABEL,
    shard_map_config_map,
    shard_name,
)
from tidings_operator.resources.meta import labels, object_meta

SHARD_MAP_KEY = SHARD_MAP_FILE_NAME


def slot_bounds(first: int, last: int, count: int) -> list[tuple[int, int]]:
    """``count`` contiguous, nearly equal ranges covering ``first..last``."""
    size = last - first + 1
    if not 1 <= count <= size:
        raise ValueError(f"cannot cut {size} slots into {count} shards")
    cuts = [first + i * size // count for i in range(count + 1)]
    return [(cuts[i], cuts[i + 1] - 1) for i in range(count)]


def home_shards(region: ChatRegion) -> list[Shard]:
    """The shards a region is home to, each owned by it at epoch 1 (as created)."""
    slots = region.spec.slot_range
    return [
        Shard(shard_name(region.region, i), lo, hi, region.region, region.region)
        for i, (lo, hi) in enumerate(slot_bounds(slots.first, slots.last, region.spec.shards))
    ]


def message_shard(region: ChatRegion, index: int, shard: Shard) -> dict[str, Any]:
    """A MessageShard as first created.

    Only creation may write ``owner`` and ``epoch``: afterwards failover owns them, so
    the applier must create this object when it is missing and never re-apply those
    two fields (a re-apply would undo a failover and lower the fencing epoch).
    """
    return {
        "apiVersion": API_VERSION,
        "kind": MESSAGE_SHARD,
        "metadata": object_meta(
            shard.name, region, labels(region.region, "shard", {REGION_LABEL: region.region})
        ),
        "spec": {
            "region": shard.home_region,
            "index": index,
            "firstSlot": shard.first_slot,
            "lastSlot": shard.last_slot,
            "owner": shard.owner_region,
            "epoch": shard.epoch,
        },
    }


def message_shards(region: ChatRegion) -> list[dict[str, Any]]:
    return [message_shard(region, i, s) for i, s in enumerate(home_shards(region))]


def shard_map_problem(shards: Sequence[Shard]) -> str | None:
    """Why ``shards`` do not form a valid map (gap, overlap), or None."""
    try:
        ShardMap(tuple(shards))
    except ValueError as exc:
        return str(exc)
    return None


def region_gateways(region: ChatRegion) -> dict[str, str]:
    """Region -> gateway URL for the shard map, so clients can find the region serving
    them (``GET /v1/regions``): this region's ``spec.publicUrl`` and each peer's
    ``gatewayEndpoint``, where set."""
    found = {peer.name: peer.gateway_endpoint for peer in region.spec.peers}
    found[region.region] = region.spec.public_url
    return {
        name: url.rstrip("/")
        for name, url in found.items()
        if url.startswith(("http://", "https://"))  # anything else is no use to a client
    }


def peer_health(region: ChatRegion) -> dict[str, str]:
    """Peer -> its health as this region's failover loop last judged it (clients read it
    in ``GET /v1/regions`` to avoid a failed region)."""
    failover = region.status.failover if region.status is not None else None
    return {peer.name: peer.health for peer in failover.peers} if failover else {}


def shard_map_config_map_manifest(
    region: ChatRegion, shards: Iterable[Shard] | None = None
) -> dict[str, Any]:
    """The shard map ConfigMap, from the MessageShards seen (the region's own as first
    created when none are given). Apart from the settings ConfigMap because it changes
    on failover and must not roll the pods: it reaches them as a mounted file."""
    known = list(shards) if shards is not None else home_shards(region)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            shard_map_config_map(region.region), region, labels(region.region, "shardmap")
        ),
        "data": {
            SHARD_MAP_KEY: shard_map_document(known, region_gateways(region), peer_health(region))
        },
    }
