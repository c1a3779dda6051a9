"""Quorum failure detection: when is a peer region ``Failed``, and what may be done
about it. Pure: observations and time come in, verdicts and a decision go out.

**Sightings.** Every region's operator probes the data plane of each of its peers (the
gateway's ``/readyz`` when ``spec.peers[].gatewayEndpoint`` is set, an ``ApiVersions``
request to its Kafka when ``kafkaBootstrapServers`` is) and publishes what it saw on its own
heartbeat Lease (annotation ``tidings.dev/observations``): per peer, when it last
checked and since when the peer's data plane has been unreachable (every probe failing),
so the other regions can count it. A region that probes nothing publishes nothing for
that peer and has no vote on it.

**Verdict.** A peer is ``Failed`` only when a majority of all the regions (``N // 2 + 1``
of ``N``: 2 of 3, 3 of 5) observe its data plane unreachable for the whole detection
window. Only current sightings count: the observer's own heartbeat must be current (a
region whose operator is down has no vote) and its check no older than the window. The
failed region itself never votes, so with two regions a majority (2) cannot be reached
and no peer is ever ``Failed``: ``Automatic`` failover does not act, only a person's
``kubectl tidings failover`` does.

An expired heartbeat Lease alone never fails a peer: it is ``OperatorDown`` (operator
crashed, restarting or being upgraded; its gateways and Kafka may serve on), which moves
nothing. A peer whose Lease never existed is ``Unknown`` (never started and died look the
same from outside), never taken over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tidings_operator.clock import parse_rfc3339
from tidings_operator.failover import Health, Heartbeat, PeerVerdict, heartbeat_lease_name

OBSERVATIONS_ANNOTATION = "tidings.dev/observations"


@dataclass(frozen=True)
class Sighting:
    """One region's view of another region's data plane, as it publishes it."""

    target: str
    checked: datetime
    down_since: datetime | None
    """Start of the current run of checks that found the data plane unreachable; None
    while it is reachable."""
    problem: str = ""

    @property
    def reachable(self) -> bool:
        return self.down_since is None


def observe(
    target: str, probes: int, problems: Sequence[str], previous: Sighting | None, now: datetime
) -> Sighting | None:
    """This check's sighting of ``target``: unreachable when every one of the ``probes``
    made failed (``problems`` says why each did). None when nothing could be probed."""
    if probes == 0:
        return None
    if len(problems) < probes:
        return Sighting(target, now, None)
    since = previous.down_since if previous is not None and previous.down_since else now
    return Sighting(target, now, since, "; ".join(problems))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def publish(sightings: Mapping[str, Sighting]) -> str:
    """The annotation's value: compact JSON, sorted, so an unchanged view is unchanged."""
    doc = {
        target: {
            "checked": _iso(s.checked),
            **({"downSince": _iso(s.down_since)} if s.down_since else {}),
            **({"problem": s.problem[:300]} if s.problem else {}),
        }
        for target, s in sorted(sightings.items())
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def read_sightings(lease: Mapping[str, Any] | None) -> dict[str, Sighting]:
    """The sightings a region published on its Lease; what cannot be read counts as
    nothing seen (a garbled annotation must not vote anyone down)."""
    annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
    try:
        doc = json.loads(annotations.get(OBSERVATIONS_ANNOTATION) or "{}")
    except ValueError:
        return {}
    found = {}
    for target, seen in doc.items() if isinstance(doc, dict) else ():
        checked = parse_rfc3339(seen.get("checked")) if isinstance(seen, dict) else None
        if checked is None:
            continue
        problem = seen.get("problem")
        found[str(target)] = Sighting(
            str(target),
            checked,
            parse_rfc3339(seen.get("downSince")),
            problem if isinstance(problem, str) else "",
        )
    return found


@dataclass(frozen=True)
class Vantage:
    """One region's sighting of the peer being judged, with that region's heartbeat
    (whose currency decides whether the sighting still counts)."""

    observer: str
    sighting: Sighting | None
    heartbeat: Heartbeat | None


def majority(regions: int) -> int:
    """Regions that must agree that one of them failed."""
    return regions // 2 + 1


def _counts(v: Vantage, now: datetime, window: int) -> bool:
    return (
        v.sighting is not None
        and v.heartbeat is not None
        and not v.heartbeat.expired(now)
        and now - v.sighting.checked <= timedelta(seconds=window)
    )


def judge_peer(
    peer: str,
    heartbeat: Heartbeat | None,
    vantages: Sequence[Vantage],
    regions: int,
    previous: PeerVerdict | None,
    now: datetime,
    window_seconds: int,
) -> PeerVerdict:
    """The peer's health from its heartbeat and every region's sighting of it.
    ``regions`` counts all the regions (the peer and the judge included)."""
    need = majority(regions)
    one_each: dict[str, Vantage] = {}  # a region has one vote, however often it is listed
    for v in vantages:
        if v.observer != peer and _counts(v, now, window_seconds):
            one_each.setdefault(v.observer, v)
    counted = list(one_each.values())
    seeing_down = [v for v in counted if v.sighting is not None and not v.sighting.reachable]
    window = timedelta(seconds=window_seconds)
    votes = [
        v.observer
        for v in seeing_down
        if v.sighting is not None and v.sighting.down_since is not None
        if now - v.sighting.down_since >= window
    ]

    def verdict(health: Health, reason: str, message: str) -> PeerVerdict:
        # Suspect and Failed are one run of failed checks: Failed keeps Suspect's start.
        failing = (Health.SUSPECT, Health.FAILED)
        same_run = previous is not None and (
            previous.health == health or (previous.health in failing and health in failing)
        )
        since = previous.since if same_run and previous is not None else now
        return PeerVerdict(peer, health, since, reason, message, len(votes), need)

    if heartbeat is None:
        return verdict(
            Health.UNKNOWN,
            "NoHeartbeat",
            f"no heartbeat Lease {heartbeat_lease_name(peer)} yet: is its operator running?",
        )
    problem = next((v.sighting.problem for v in seeing_down if v.sighting), "")
    if len(votes) >= need and need <= regions - 1:  # (two regions: never)
        return verdict(
            Health.FAILED,
            "DataPlaneUnreachable",
            f"data plane unreachable for the {window_seconds}s window as seen by "
            f"{', '.join(sorted(votes))} ({len(votes)} of {regions} regions, majority "
            f"{need}): {problem}",
        )
    if seeing_down:
        observers = sorted(v.observer for v in seeing_down)
        short = (
            f"a majority is {need} of {regions} regions and only {regions - 1} can observe "
            "it: never Failed automatically"
            if need > regions - 1
            else f"{len(votes)} of the {need} needed have seen it for the {window_seconds}s window"
        )
        return verdict(
            Health.SUSPECT,
            "DataPlaneUnreachable",
            f"data plane unreachable as seen by {', '.join(observers)}; {short}: {problem}",
        )
    if heartbeat.expired(now):
        healthy = [v.observer for v in counted]
        plane = (
            f"data plane reachable from {', '.join(sorted(healthy))}"
            if healthy
            else "data plane not observed (no gatewayEndpoint or kafkaBootstrapServers "
            "in spec.peers)"
        )
        return verdict(
            Health.OPERATOR_DOWN,
            "OperatorDown",
            f"operator down: heartbeat last renewed {_iso(heartbeat.renewed)} (Lease of "
            f"{heartbeat.duration_seconds}s expired); {plane}; an operator outage moves "
            "no shards",
        )
    return verdict(Health.HEALTHY, "Healthy", "heartbeat current, data plane reachable")


class Action(StrEnum):
    NONE = "None"
    TAKE_OVER = "TakeOver"
    NO_QUORUM = "NoQuorum"
    """``Automatic`` with fewer than three regions: a failure can never be agreed."""
    MANUAL = "Manual"
    """A peer failed or is suspect and the policy leaves it to a person."""


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    message: str
    failed: tuple[str, ...] = ()
    """The peers whose shards are taken over (``TakeOver``)."""


def decide(policy: str, regions: int, verdicts: Sequence[PeerVerdict]) -> Decision:
    """What the failover loop does this time, and why (written to ``status.failover``)."""
    failed = tuple(v.name for v in verdicts if v.health is Health.FAILED)
    unwell = [v for v in verdicts if v.health in (Health.FAILED, Health.SUSPECT)]
    down = [v.name for v in verdicts if v.health is Health.OPERATOR_DOWN]
    if policy == "Automatic" and majority(regions) > regions - 1:
        lost = f" ({unwell[0].name} looks down: {unwell[0].message})" if unwell else ""
        return Decision(
            Action.NO_QUORUM,
            "FailoverNoQuorum",
            f"{regions} regions: a failure needs a majority of {majority(regions)} regions "
            f"observing it and only {regions - 1} can, so Automatic failover will not act"
            f"{lost}; move shards with kubectl tidings failover REGION --to PEER",
        )
    if failed and policy == "Automatic":
        return Decision(
            Action.TAKE_OVER,
            "PeerFailed",
            f"{', '.join(failed)} failed by a majority of regions: taking over its shards",
            failed,
        )
    if unwell and policy != "Automatic":
        first = unwell[0]
        return Decision(
            Action.MANUAL,
            "ManualFailover",
            f"{first.name} is {first.health.value} and failover.policy is Manual: "
            f"kubectl tidings failover {first.name} --to PEER moves its shards",
        )
    if down:
        return Decision(
            Action.NONE,
            "OperatorDown",
            f"operator of {', '.join(down)} down, data plane not failed: nothing moves",
        )
    return Decision(Action.NONE, "NoFailure", "no peer failed by a majority of regions")
