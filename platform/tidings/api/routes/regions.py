"""/v1/regions: which regions there are, which one serves the caller, and where their
gateways are (``core.discovery``; read from the shard map the operator publishes).

``GET /v1/regions`` needs no token: a client that cannot reach its gateway asks any
other region's. A device receives its messages from the region that owns its shard now,
so a client asks ``/v1/regions/mine`` before it connects and goes to that gateway.
"""

from __future__ import annotations

from fastapi import APIRouter

from tidings.api.deps import Me, Svc
from tidings.api.schemas import PlacementOut, RegionOut, RegionsOut
from tidings.core.discovery import placement_of, regions_of

router = APIRouter(prefix="/v1", tags=["regions"])


@router.get("/regions")
async def regions(svc: Svc) -> RegionsOut:
    """Every region this gateway's shard map knows, with its gateway and shards."""
    ctx = svc.ctx
    return RegionsOut(
        here=ctx.region,
        regions=[
            RegionOut(
                name=r.name,
                gateway=r.gateway,
                home_shards=r.home_shards,
                owned_shards=r.owned_shards,
                health=r.health,
            )
            for r in regions_of(ctx.shard_map, ctx.region)
        ],
    )


@router.get("/regions/mine")
async def my_region(me: Me, svc: Svc) -> PlacementOut:
    """The caller's home region and the region serving it now, with its gateway."""
    placed = placement_of(svc.ctx.shard_map, me.user_id)
    return PlacementOut(
        here=svc.ctx.region,
        home_region=placed.home_region,
        owner_region=placed.owner_region,
        gateway=placed.gateway,
    )
