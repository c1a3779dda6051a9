"""Failover decisions: is a peer region alive, and which shards move where. No I/O.

**Health.** Every region's operator renews a heartbeat Lease (``tidings-region-<name>``)
while it runs. A region watching a peer reads that Lease and, when the peer lists a
gateway endpoint, probes its ``/readyz``. The peer *fails a check* when its Lease has
expired or the probe fails; after ``detectionWindowSeconds`` of failed checks in a row it
is ``Failed``. A peer whose Lease never existed is ``Unknown`` and is never taken over
automatically: "never started" and "died" look the same from outside, and a newly
applied pair of regions must not grab each other's shards before both operators run.

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
    """Failing checks, for less than the detection window so far."""
    FAILED = "Failed"
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
class PeerObservation:
    name: str
    heartbeat: Heartbeat | None
    probe_error: str | None = None
    """Why the gateway probe failed; None when it passed or there is no endpoint."""


@dataclass(frozen=True)
class PeerVerdict:
    name: str
    health: Health
    since: datetime
    """When the peer entered this state (kept while it stays there)."""
    reason: str
    message: str


def judge_peer(
    seen: PeerObservation,
    previous: PeerVerdict | None,
    now: datetime,
    window_seconds: int,
) -> PeerVerdict:
    """The peer's state from this observation and the last verdict (level-based: the
    caller keeps verdicts in status, so an operator restart loses no detection time)."""

    def verdict(health: Health, reason: str, message: str) -> PeerVerdict:
        # Suspect and Failed are one run of failed checks: Failed keeps Suspect's start.
        failing = (Health.SUSPECT, Health.FAILED)
        same_run = previous is not None and (
            previous.health == health or (previous.health in failing and health in failing)
        )
        since = previous.since if same_run and previous is not None else now
        return PeerVerdict(seen.name, health, since, reason, message)

    if seen.heartbeat is None:
        return verdict(
            Health.UNKNOWN,
            "NoHeartbeat",
            f"no heartbeat Lease {heartbeat_lease_name(seen.name)} yet: is its operator running?",
        )
    failures = []
    if seen.heartbeat.expired(now):
        failures.append(
            f"heartbeat last renewed {seen.heartbeat.renewed.isoformat()} "
            f"(Lease of {seen.heartbeat.duration_seconds}s expired)"
        )
    if seen.probe_error:
        failures.append(f"gateway probe failed: {seen.probe_error}")
    if not failures:
        return verdict(Health.HEALTHY, "HeartbeatCurrent", "heartbeat current")
    reason = "HeartbeatExpired" if seen.heartbeat.expired(now) else "GatewayUnreachable"
    suspect = verdict(Health.SUSPECT, reason, "; ".join(failures))
    failing_for = (now - suspect.since).total_seconds()
    if failing_for < window_seconds:
        return suspect
    return PeerVerdict(
        seen.name,
        Health.FAILED,
        suspect.since,
        reason,
        f"failing for {failing_for:.0f}s (window {window_seconds}s): {'; '.join(failures)}",
    )


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
    owned = [s for s in _ordered(shards) if s.owner == failed]
    moves = [_move(shard, takers[i % len(takers)]) for i, shard in enumerate(owned)]
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
