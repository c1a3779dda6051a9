"""What the pods of each component say: the failures a Deployment's counts hide.

A Deployment reports ready counts and, after ``progressDeadlineSeconds`` (ten minutes),
a stalled rollout. Its pods say more and say it at once: a wrong image
(``ImagePullBackOff``), a crash loop, a missing Secret (``CreateContainerConfigError``),
no node to run on, or a pod that has not become ready for longer than a start-up may
take. A pod not ready for less than that is starting (a scale-up), not a failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tidings_operator.clock import parse_rfc3339
from tidings_operator.names import COMPONENT_LABEL

FAILING_WAITS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        # imagePullPolicy Never and the image is not on the node: no pull will fix it.
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""Container waiting reasons that mean the pod will not start by waiting longer."""

UNREADY_BOUND = timedelta(minutes=3)
"""How long a pod may be not ready before it counts as failing: the platform
container's startup probe allows two minutes."""


@dataclass(frozen=True)
class PodIssue:
    component: str
    reason: str
    """CamelCase: the container's waiting reason, ``Unschedulable`` or ``PodNotReady``."""
    message: str


@dataclass(frozen=True)
class ComponentPods:
    """The pods of one component, as far as readiness goes."""

    issues: tuple[PodIssue, ...] = ()
    starting: int = 0
    """Pods not ready yet, within ``UNREADY_BOUND`` and with nothing failing."""


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def pod_issue(
    component: str, pod: Mapping[str, Any], now: datetime, bound: timedelta = UNREADY_BOUND
) -> PodIssue | None:
    """What is wrong with one pod, or None when it is ready or still starting."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FAILING_WAITS:
            extra = [str(waiting["message"])[:200]] if waiting.get("message") else []
            if restarts := container.get("restartCount", 0):
                extra.append(f"{restarts} restarts")
            suffix = f" ({'; '.join(extra)})" if extra else ""
            return PodIssue(
                component,
                str(reason),
                f"{component}: pod {name} container {container.get('name', '?')}: {reason}{suffix}",
            )
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return PodIssue(
            component,
            "Unschedulable",
            f"{component}: pod {name} cannot be scheduled: {scheduled.get('message', '')}"[:400],
        )
    if _condition(pod, "Ready").get("status") == "True":
        return None
    started = parse_rfc3339(status.get("startTime")) or parse_rfc3339(
        (pod.get("metadata") or {}).get("creationTimestamp")
    )
    if started is not None and now - started > bound:
        seconds = int((now - started).total_seconds())
        return PodIssue(
            component,
            "PodNotReady",
            f"{component}: pod {name} not ready {seconds}s after it started "
            f"(bound {int(bound.total_seconds())}s); check its readiness probe (/readyz)",
        )
    return None


def component_pods(
    pods: Iterable[Mapping[str, Any]], now: datetime, bound: timedelta = UNREADY_BOUND
) -> dict[str, ComponentPods]:
    """Per component label: the pods' issues and how many are still starting. Pods being
    deleted are left out (a rollout's old pods go that way)."""
    issues: dict[str, list[PodIssue]] = {}
    starting: dict[str, int] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        component = (meta.get("labels") or {}).get(COMPONENT_LABEL, "")
        issues.setdefault(component, [])
        starting.setdefault(component, 0)
        if (issue := pod_issue(component, pod, now, bound)) is not None:
            issues[component].append(issue)
        elif _condition(pod, "Ready").get("status") != "True":
            starting[component] += 1
    return {c: ComponentPods(tuple(issues[c]), starting[c]) for c in issues}
