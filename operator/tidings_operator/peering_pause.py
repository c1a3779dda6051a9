"""The operator's peering pause, made visible in kubectl and in its metrics.

Of the operators sharing a kopf peering (``--peering``), only the one with the highest
priority acts; the others pause every handler, and two of the same priority pause both.
kopf says so only in the paused operator's log, so an SRE looking at a region sees nothing
while it goes unreconciled. Here each pause and each resume becomes an Event on every
ChatRegion the operator runs in that namespace (``kubectl describe chatregion``, ``kubectl
get events``): ``OperatorPaused`` (Normal when a higher priority operator took over,
Warning when operators of one priority paused each other and none acts) and
``OperatorResumed``; and the gauge ``tidings_operator_peering_paused{namespace}`` is 1
while paused. No condition is written: the acting operator owns the status, and a paused
one writing to it would fight it.

kopf has no hook for this. Written against kopf 1.45.2 (``kopf_fixes.KOPF_VERSION``):
kopf's peering processor gets a ``conflicts_found`` toggle and turns it on to pause and
off to resume; the processor is wrapped so that the toggle it gets reports each turn. A
unit test drives kopf's own processor through the wrapper, so a kopf that changes this
fails the test instead of going quiet.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kopf._core.engines import peering

from tidings_operator import metrics
from tidings_operator.kube import ApiError, Kube
from tidings_operator.names import CHAT_REGION

log = logging.getLogger(__name__)

_KOPF_PROCESSOR = peering.process_peering_event

PAUSED = "OperatorPaused"
RESUMED = "OperatorResumed"


@dataclass(frozen=True)
class PauseChange:
    """One turn of an operator's pause in one peering."""

    paused: bool
    namespace: str
    """The KopfPeering's namespace; "" for a ClusterKopfPeering (every namespace)."""
    message: str
    deadlock: bool = False
    """Paused by operators of the same priority: nobody acts until one goes."""

    @property
    def reason(self) -> str:
        return PAUSED if self.paused else RESUMED


Report = Callable[[PauseChange], Awaitable[None]]


def blocking_peers(
    status: Mapping[str, Any], *, identity: str, priority: int
) -> list[tuple[str, int]]:
    """The live peers (id, priority) that make an operator of ``priority`` pause: those
    of a higher or the same priority, highest first. Liveness is kopf's own rule."""
    found = []
    for peer_id, info in status.items():
        if peer_id == identity or not isinstance(info, Mapping):
            continue
        try:
            peer = peering.Peer(identity=peering.Identity(peer_id), **info)
        except (TypeError, ValueError):
            continue  # not a heartbeat kopf would read either
        if not peer.is_dead and peer.priority >= priority:
            found.append((peer_id, peer.priority))
    return sorted(found, key=lambda p: (-p[1], p[0]))


def pause_change(
    paused: bool,
    *,
    namespace: str,
    peering_name: str,
    identity: str,
    priority: int,
    status: Mapping[str, Any],
) -> PauseChange:
    """What to tell about one turn of the pause, from the peering object's status."""
    me = f"operator {identity} (priority {priority})"
    if not paused:
        return PauseChange(
            False,
            namespace,
            f"{me} resumed: no other live operator of this or a higher priority in "
            f"peering {peering_name}",
        )
    peers = blocking_peers(status, identity=identity, priority=priority)
    named = ", ".join(f"{peer_id} (priority {p})" for peer_id, p in peers) or "another operator"
    deadlock = bool(peers) and all(p == priority for _, p in peers)
    if deadlock:
        message = (
            f"{me} paused in peering {peering_name}: {named} has the same priority, so "
            "every one of them pauses and none reconciles until one leaves or takes "
            "another priority"
        )
    else:
        message = (
            f"{me} paused in peering {peering_name} in favour of {named}, which reconciles "
            "meanwhile"
        )
    return PauseChange(True, namespace, message, deadlock=deadlock)


_PAUSES_TOLD: weakref.WeakSet[Any] = weakref.WeakSet()
"""kopf's toggles whose pause was reported: only those have a resume to report."""


class _ReportingToggle:
    """kopf's toggle as its peering processor uses it (``is_on``, ``is_off``,
    ``turn_to``), reporting each turn once it took effect."""

    def __init__(self, toggle: Any, describe: Callable[[bool], PauseChange], report: Report):
        self._toggle = toggle
        self._describe = describe
        self._report = report

    def is_on(self) -> bool:
        return bool(self._toggle.is_on())

    def is_off(self) -> bool:
        return bool(self._toggle.is_off())

    async def turn_to(self, state: bool) -> None:
        changed = bool(self._toggle.is_on()) != state
        await self._toggle.turn_to(state)
        if not changed:
            return
        if state:
            _PAUSES_TOLD.add(self._toggle)
        elif self._toggle in _PAUSES_TOLD:
            _PAUSES_TOLD.discard(self._toggle)
        else:
            return  # kopf starts paused until its first look at the peering: no news
        try:
            await self._report(self._describe(state))
        except Exception:  # the pause itself must go on whatever the report does
            log.exception("could not report the peering pause")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._toggle, name)


def report_peering_pauses(report: Report) -> None:
    """Have ``report`` called on every pause and resume of this process's operator."""
    original = _KOPF_PROCESSOR  # registered again (tests): still one wrapper

    async def processor(*, conflicts_found: Any = None, **kwargs: Any) -> None:
        if conflicts_found is not None:
            raw_event = kwargs["raw_event"]
            settings = kwargs["settings"]

            def describe(paused: bool) -> PauseChange:
                return pause_change(
                    paused,
                    namespace=kwargs.get("namespace") or "",
                    peering_name=settings.peering.name,
                    identity=str(kwargs["identity"]),
                    priority=settings.peering.priority,
                    status=(raw_event.get("object") or {}).get("status") or {},
                )

            conflicts_found = _ReportingToggle(conflicts_found, describe, report)
        await original(conflicts_found=conflicts_found, **kwargs)

    peering.process_peering_event = processor


async def announce(kube: Kube, change: PauseChange, serves: Callable[[str], bool]) -> None:
    """The gauge, a log line, and an Event on each ChatRegion this operator runs in the
    peering's namespace (every namespace for a cluster-wide peering)."""
    metrics.PEERING_PAUSED.labels(change.namespace).set(1 if change.paused else 0)
    (log.warning if change.deadlock else log.info)("%s", change.message)
    for region in await kube.list(CHAT_REGION, change.namespace or None):
        if not serves(region["metadata"]["name"]):
            continue
        try:
            await kube.event(
                region, reason=change.reason, message=change.message, warning=change.deadlock
            )
        except ApiError as exc:  # best effort, as every Event (a terminating namespace)
            metrics.EVENTS_DROPPED.labels(change.reason).inc()
            log.warning("event %s not posted: %s", change.reason, exc)
