"""Failover decisions: is a peer region alive, and which shards move where. No I/O.

**Health.** Every region's operator renews a heartbeat Lease (``tidings-region-<name>``)
while it runs and publishes on it what it sees of its peers' data planes; ``quorum``
turns those into a verdict per peer (``Failed`` only by a majority of the regions).

**Moves.** Moving a shard writes its new ``owner`` and ``epoch + 1`` in one update that
carries the ``resourceVersion`` it was planned from: the bump fences the old owner (its
writes, stamped with the old epoch, are refused) and the precondition makes two regions
racing for one shard end with one winner (the other gets a conflict and re-plans). The
CRD's CEL rules refuse an owner change without a bump and any epoch decrease.

An automatic takeover spreads the failed region's shards round-robin over the regions
able to take them (the acting region and its healthy peers, failed ones excluded); each
region carries out only the moves that name it, so peers acting at once do not collide.
Failback (shards back to their home region) is only ever asked for by a person.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

HEARTBEAT_LEASE_PREFIX = "tidings-region-"


def heartbeat_lease_name(region: str) -> str:
    return f"{HEARTBEAT_LEASE_PREFIX}{region}"


class Health(StrEnum):
    HEALTHY = "Healthy"
    SUSPECT = "Suspect"
    """Some region sees its data plane unreachable, not yet a majority for the window."""
    FAILED = "Failed"
    """A majority of the regions saw its data plane unreachable for the whole window."""
    OPERATOR_DOWN = "OperatorDown"
    """Its heartbeat expired, its data plane is not failed: nothing moves."""
    UNKNOWN = "Unknown"
    """No heartbeat was ever seen."""


@dataclass(frozen=True)
class Heartbeat:
    """A peer's Lease as read: when it was renewed and for how long that holds."""

    renewed: datetime
    duration_seconds: int

    def expired(self, now: datetime) -> bool:
        return now > self.renewed + timedelta(seconds=self.duration_seconds)


@dataclass(frozen=True)
class PeerVerdict:
    name: str
    health: Health
    since: datetime
    """When the peer entered this state (kept while it stays there)."""
    reason: str
    message: str
    votes: int = 0
    """Regions that saw its data plane unreachable for the whole window."""
    needed: int = 0
    """Votes that make it ``Failed`` (a majority of the regions)."""


@dataclass(frozen=True)
class ShardView:
    """What a move is planned from."""

    name: str
    home: str
    index: int
    owner: str
    epoch: int
    resource_version: str


@dataclass(frozen=True)
class Move:
    shard: str
    from_owner: str
    to_owner: str
    epoch: int
    """The new epoch (the old one plus one)."""
    resource_version: str

    def describe(self) -> str:
        return (
            f"shard {self.shard}: {self.from_owner} -> {self.to_owner} "
            f"(epoch {self.epoch - 1} -> {self.epoch})"
        )


class MoveRefused(ValueError):
    """A requested move that cannot be made (unknown region, nothing to move...)."""


def _move(shard: ShardView, to: str) -> Move:
    return Move(shard.name, shard.owner, to, shard.epoch + 1, shard.resource_version)


def _ordered(shards: Iterable[ShardView]) -> list[ShardView]:
    return sorted(shards, key=lambda s: (s.home, s.index, s.name))


def plan_takeover(
    failed: str, acting: str, healthy_peers: Iterable[str], shards: Sequence[ShardView]
) -> list[Move]:
    """The moves ``acting`` makes for the shards ``failed`` owns now."""
    takers = sorted({acting, *healthy_peers} - {failed})
    # Each shard's taker follows from its place among all the shards, not among those
    # still to move: regions acting one after the other agree on who takes what.
    moves = [
        _move(shard, takers[i % len(takers)])
        for i, shard in enumerate(_ordered(shards))
        if shard.owner == failed
    ]
    return [m for m in moves if m.to_owner == acting]


def plan_failover(
    region: str, to: str, regions: Iterable[str], shards: Sequence[ShardView]
) -> list[Move]:
    """``kubectl tidings failover REGION --to PEER``: every shard ``region`` owns to ``to``."""
    known = set(regions)
    for name in (region, to):
        if name not in known:
            raise MoveRefused(f"no ChatRegion {name} here (regions: {', '.join(sorted(known))})")
    if region == to:
        raise MoveRefused(f"{region} cannot fail over to itself")
    owned = [s for s in _ordered(shards) if s.owner == region]
    if not owned:
        raise MoveRefused(f"{region} owns no shards: nothing to move")
    return [_move(shard, to) for shard in owned]


def plan_failback(region: str, regions: Iterable[str], shards: Sequence[ShardView]) -> list[Move]:
    """``kubectl tidings failback REGION``: its own shards served elsewhere come home."""
    if region not in set(regions):
        raise MoveRefused(f"no ChatRegion {region} here")
    return [_move(s, region) for s in _ordered(shards) if s.home == region and s.owner != region]
