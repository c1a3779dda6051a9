"""Which region serves a client, and where its gateway is: pure functions over the
shard map, for ``GET /v1/regions`` and ``GET /v1/regions/mine``.

A client may connect to any region's gateway: a send is routed to the recipients'
owning regions whatever the gateway. But a device receives its messages from the region
that owns its shard now (its home, or the peer that took the shard over), so after a
failover a client asks where it is served and moves there.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.core.shardmap import ShardMap


@dataclass(frozen=True)
class RegionView:
    name: str
    gateway: str | None
    """None when the map names no gateway for it (a client keeps the one it uses)."""
    home_shards: int
    """Shards this region is home to."""
    owned_shards: int
    """Shards it serves now: its own unless moved away, and any it took over."""
    health: str | None
    """As this region's operator last judged it (``Healthy``, ``Suspect``, ``Failed``,
    ``OperatorDown``, ``Unknown``); ``Healthy`` for the region answering (it does);
    None when the map says nothing of it."""


@dataclass(frozen=True)
class Placement:
    home_region: str
    owner_region: str
    """The region that serves the user now (the home region unless its shard moved)."""
    gateway: str | None
    """The owner region's gateway, None when the map names none."""


def regions_of(shard_map: ShardMap, here: str) -> list[RegionView]:
    """Every region the map knows (``here`` first, then by name): each one's gateway and
    its shards. Shards the map leaves unmapped count for nobody."""
    names = {here} | {name for name, _ in (*shard_map.gateways, *shard_map.health)}
    named = [s for s in shard_map.shards if s.epoch > 0]
    for shard in named:
        names |= {shard.home_region, shard.owner_region}
    return [
        RegionView(
            name=name,
            gateway=shard_map.gateway_of(name),
            home_shards=sum(s.home_region == name for s in named),
            owned_shards=sum(s.owner_region == name for s in named),
            health="Healthy" if name == here else shard_map.health_of(name),
        )
        for name in sorted(names, key=lambda n: (n != here, n))
    ]


def placement_of(shard_map: ShardMap, user_id: str) -> Placement:
    """Where ``user_id`` is homed and served now."""
    shard = shard_map.shard_for(user_id)
    return Placement(
        home_region=shard.home_region,
        owner_region=shard.owner_region,
        gateway=shard_map.gateway_of(shard.owner_region),
    )
