"""The failover loop's part of a ChatRegion's status: ``status.failover`` (each peer's
verdict, the regions and the majority, the last decision and why) and the
``PeersHealthy`` condition. Pure; the loop in ``failover_loop`` writes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tidings_operator.failover import Health, PeerVerdict
from tidings_operator.models import ChatRegion, Condition
from tidings_operator.models.chatregion import FailoverDecision, FailoverStatus, PeerStatus
from tidings_operator.quorum import Decision, majority
from tidings_operator.status import PEERS_HEALTHY, condition, merge_conditions


def peers_condition(
    verdicts: Sequence[PeerVerdict], generation: int, now: datetime
) -> Condition | None:
    """``PeersHealthy``, for a region with peers: False names the first peer that is not
    healthy (a failover in progress or done shows here and in Events)."""
    if not verdicts:
        return None
    unwell = [v for v in verdicts if v.health is not Health.HEALTHY]
    if not unwell:
        names = ", ".join(v.name for v in verdicts)
        return condition(
            PEERS_HEALTHY, "True", "AllPeersHealthy", f"{names}: healthy", generation, now
        )
    first = unwell[0]
    more = f" ({len(unwell) - 1} more peers not healthy)" if len(unwell) > 1 else ""
    return condition(
        PEERS_HEALTHY,
        "False",
        f"Peer{first.health.value}",
        f"{first.name}: {first.message}{more}",
        generation,
        now,
    )


def previous_verdicts(region: ChatRegion) -> dict[str, PeerVerdict]:
    """The verdicts in the region's status (detection time survives operator restarts)."""
    block = region.status.failover if region.status else None
    return {
        p.name: PeerVerdict(
            p.name, Health(p.health), p.since, p.reason, p.message, p.votes, p.votes_needed
        )
        for p in (block.peers if block else [])
    }


def previous_decision(region: ChatRegion) -> FailoverDecision | None:
    block = region.status.failover if region.status else None
    return block.decision if block else None


def failover_status(
    region: ChatRegion, verdicts: Sequence[PeerVerdict], decision: Decision, now: datetime
) -> dict[str, Any]:
    """The status patch the failover loop writes: its block, and the conditions with
    ``PeersHealthy`` recomputed (the others as the reconcile left them). The decision's
    time moves only when the decision changes, as a condition's transition time does."""
    regions = len(region.spec.peers) + 1
    before = previous_decision(region)
    same = before is not None and (before.action, before.reason) == (
        decision.action.value,
        decision.reason,
    )
    block = FailoverStatus(
        regions=regions,
        majority=majority(regions),
        peers=[
            PeerStatus(
                name=v.name,
                health=v.health.value,
                since=v.since,
                reason=v.reason,
                message=v.message,
                votes=v.votes,
                votes_needed=v.needed,
            )
            for v in verdicts
        ],
        decision=FailoverDecision(
            action=decision.action.value,
            reason=decision.reason,
            message=decision.message,
            time=before.time if same and before is not None else now,
        ),
    )
    old = list(region.status.conditions) if region.status else []
    conditions = [c for c in old if c.type != PEERS_HEALTHY]
    cond = peers_condition(verdicts, region.metadata.generation, now)
    if cond is not None:
        conditions.extend(merge_conditions(old, [cond]))
    return {
        "failover": block.model_dump(mode="json", by_alias=True, exclude_none=True),
        "conditions": [
            c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions
        ],
    }


def decision_changed(region: ChatRegion, decision: Decision) -> bool:
    before = previous_decision(region)
    return before is None or (before.action, before.reason) != (
        decision.action.value,
        decision.reason,
    )
