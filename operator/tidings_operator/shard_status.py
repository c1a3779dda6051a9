"""A MessageShard's status, and where its slots are routed, from what its owner is.

The API server checks an owner change's fencing (a newer epoch) but cannot know which
regions exist: ``owner: nowhere`` is accepted. The operator then marks the shard
``Invalid`` and keeps routing its slots to the last owner that acknowledged it (its
``status.owner`` and ``status.epoch``), so a typo never sends users' messages to a
region that is not there. Pure: the reconciler passes in the regions it found.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

from tidings.core.shardmap import Shard
from tidings_operator.models import Condition, MessageShard
from tidings_operator.status import READY, merge_conditions

UNKNOWN_OWNER = "UnknownOwner"
OWNER_DELETING = "OwnerDeleting"
SERVING = "Serving"


def owner_is_known(shard: MessageShard, regions: Collection[str]) -> bool:
    return shard.spec.owner in regions


def routed_shard(shard: MessageShard, regions: Collection[str]) -> Shard:
    """The shard as the shard maps route it: to ``spec.owner`` when that region
    exists, else to the last owner that acknowledged it (the home region if none)."""
    core = shard.as_core_shard()
    if owner_is_known(shard, regions):
        return core
    status = shard.status
    if status is not None and status.owner and status.owner in regions:
        return replace(core, owner_region=status.owner, epoch=max(status.epoch, 1))
    return replace(core, owner_region=core.home_region)


def shard_status(
    shard: MessageShard,
    regions: Collection[str],
    *,
    owner_deleting: bool,
    lag: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The status to write: ``Serving`` acknowledged by an existing owner, ``Invalid``
    (slots kept on the last valid owner) when the owner is no known region, or as
    before while the owner is being deleted. ``lag`` None keeps the last one read."""
    previous = shard.status
    generation = shard.metadata.generation
    spec = shard.spec
    status: dict[str, Any] = (
        previous.model_dump(mode="json", by_alias=True, exclude_none=True) if previous else {}
    )
    status["observedGeneration"] = generation
    slots = f"slots {spec.first_slot}-{spec.last_slot}"
    if not owner_is_known(shard, regions):
        kept = routed_shard(shard, regions)
        status.update(phase="Invalid", owner=kept.owner_region, epoch=kept.epoch)
        known = ", ".join(sorted(regions)) or "none"
        ready = (
            "False",
            UNKNOWN_OWNER,
            f"spec.owner {spec.owner} is not a ChatRegion of this namespace (known: {known}); "
            f"{slots} stay with {kept.owner_region} at epoch {kept.epoch}",
        )
    elif owner_deleting:
        # Its topics may be going; a lag read could bring them back (auto-creation).
        ready = ("False", OWNER_DELETING, f"owner {spec.owner} is being deleted")
    else:
        status.update(phase=SERVING, owner=spec.owner, epoch=spec.epoch)
        if lag is not None:
            status["consumerLag"] = lag
        ready = ("True", SERVING, f"{slots} served by {spec.owner} at epoch {spec.epoch}")
    condition = Condition(
        type=READY,
        status="True" if ready[0] == "True" else "False",
        reason=ready[1],
        message=ready[2],
        last_transition_time=now,
        observed_generation=generation,
    )
    old = previous.conditions if previous else []
    others = [c for c in old if c.type != READY]
    merged = [*merge_conditions(old, [condition]), *others]
    status["conditions"] = [
        c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in merged
    ]
    return status
