"""Status computed from what is there: conditions, phase, per-component readiness.

Level-based, as controller-runtime reconcilers rebuild status: every reconcile reads
the children, builds an ``Observation`` and calls ``summarize``; nothing is carried over
from the last status except each condition's ``lastTransitionTime`` while its status
holds. Time comes in as an argument.

Conditions (kstatus-style, polarity as in Kubernetes itself):

- ``Ready``: every component rolled out at this generation with every desired pod
  ready, and nothing refused. The reason names the first thing in the way.
- ``Progressing``: children are being created or rolled out, or the new pods of a
  scale-up are starting (``ScalingUp``: not ready, nothing failing, within the bound).
- ``Degraded``: something that ran is worse than asked: a pod failing (its reason, e.g.
  ``ImagePullBackOff``, ``CrashLoopBackOff``, ``PodNotReady``, naming the component), a
  rollout stalled, pods of a finished rollout are not ready, a referenced Secret or key
  missing, or applying a child failed.
- ``Paused``: the ``tidings.dev/paused`` annotation stops reconciliation.
- ``PeersHealthy`` (regions with peers): written by the failover loop
  (``failover_status``), kept as it is by the reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tidings_operator.models import ChatRegion, Condition, MessageShard, PushPool
from tidings_operator.models.base import ComponentStatus, ConditionStatus, Phase
from tidings_operator.models.chatregion import ChatRegionStatus
from tidings_operator.models.pushpool import PushPoolStatus
from tidings_operator.names import PAUSED_ANNOTATION
from tidings_operator.resources.podhealth import ComponentPods
from tidings_operator.resources.pushpool import pool_selector_text
from tidings_operator.resources.refusal import Refusal

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
PAUSED = "Paused"
PEERS_HEALTHY = "PeersHealthy"


class Rollout(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETE = "Complete"
    STALLED = "Stalled"


@dataclass(frozen=True)
class WorkloadState:
    """One Deployment as its controller reports it."""

    desired: int
    ready: int
    rollout: Rollout

    @property
    def settled(self) -> bool:
        """Rolled out, and every desired pod ready."""
        return self.rollout is Rollout.COMPLETE and self.ready >= self.desired


def deployment_state(deployment: Mapping[str, Any]) -> WorkloadState:
    """Read a live Deployment. Its ``Progressing`` condition tells a finished rollout
    (``NewReplicaSetAvailable``) from one under way or stalled, which counts alone
    cannot: a new Deployment's pods and a crashed pod both show as not ready."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    progressing: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    if progressing.get("status") == "False" and (
        progressing.get("reason") == "ProgressDeadlineExceeded"
    ):
        rollout = Rollout.STALLED
    elif (
        status.get("observedGeneration", -1) >= generation
        and progressing.get("status") == "True"
        and progressing.get("reason") == "NewReplicaSetAvailable"
    ):
        rollout = Rollout.COMPLETE
    else:
        rollout = Rollout.IN_PROGRESS
    return WorkloadState(
        desired=int(spec.get("replicas", 1)),
        ready=int(status.get("readyReplicas", 0)),
        rollout=rollout,
    )


@dataclass(frozen=True)
class Observation:
    """What one reconcile found."""

    generation: int
    workloads: Mapping[str, WorkloadState | None]
    """Per component; None when its Deployment does not exist (yet)."""
    refusals: Sequence[Refusal] = ()
    """Spec changes refused (topic shrink, datacenter removal...)."""
    errors: Sequence[Refusal] = ()
    """Children that could not be applied this time (retried)."""
    paused: bool = False
    deleting: bool = False
    pods: Mapping[str, ComponentPods] | None = None
    """Per component, what its pods say; None when they were not looked at (then a
    complete rollout short of ready pods counts as degraded, as its counts alone say)."""


@dataclass(frozen=True)
class Summary:
    conditions: tuple[Condition, ...]
    phase: Phase
    components: dict[str, ComponentStatus] = field(default_factory=dict)
    components_ready: str = ""


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def summarize(obs: Observation, previous: Sequence[Condition], now: datetime) -> Summary:
    workloads = obs.workloads
    missing = [n for n, w in workloads.items() if w is None]
    present = {n: w for n, w in workloads.items() if w is not None}
    stalled = [n for n, w in present.items() if w.rollout is Rollout.STALLED]
    short = [n for n, w in present.items() if w.rollout is Rollout.COMPLETE and not w.settled]
    moving = [n for n, w in present.items() if w.rollout is Rollout.IN_PROGRESS]
    settled = [n for n, w in present.items() if w.settled]
    pods = obs.pods
    issues = [i for n in present for i in (pods.get(n, ComponentPods()).issues if pods else ())]
    if pods is not None:
        # Short of ready pods with none failing and none past the start-up bound: the
        # new pods of a scale-up are starting, which is progress, not degradation.
        failing = {i.component for i in issues}
        scaling = [n for n in short if n not in failing]
        short = [n for n in short if n in failing]
    else:
        scaling = []

    def counts(names: Sequence[str]) -> str:
        return _names([f"{n} {present[n].ready}/{present[n].desired} ready" for n in names])

    problems = [*obs.refusals, *obs.errors]
    pod_text = "; ".join(i.message for i in issues)
    if problems:
        ready = ("False", problems[0].reason, "; ".join(p.message for p in problems))
    elif issues:
        ready = ("False", issues[0].reason, pod_text)
    elif stalled:
        ready = ("False", "RolloutStalled", f"rollout exceeded its deadline: {_names(stalled)}")
    elif short:
        ready = ("False", "ReplicasUnavailable", counts(short))
    elif missing:
        ready = ("False", "Creating", f"creating {_names(missing)}")
    elif moving:
        ready = ("False", "RollingOut", counts(moving))
    elif scaling:
        ready = ("False", "ScalingUp", counts(scaling))
    else:
        ready = ("True", "Ready", f"{len(settled)}/{len(workloads)} components ready")

    if missing or moving or scaling:
        reason = "Creating" if missing else "RollingOut" if moving else "ScalingUp"
        progressing = ("True", reason, _names([*missing, *moving, *scaling]))
    else:
        progressing = ("False", "RolloutComplete", "")

    if obs.errors:
        degraded = ("True", obs.errors[0].reason, "; ".join(e.message for e in obs.errors))
    elif issues:
        degraded = ("True", issues[0].reason, pod_text)
    elif stalled:
        degraded = ("True", "RolloutStalled", _names(stalled))
    elif short:
        degraded = ("True", "ReplicasUnavailable", counts(short))
    else:
        degraded = ("False", "AsExpected", "")

    if obs.paused:
        paused = ("True", "ReconcilePaused", f"{PAUSED_ANNOTATION} is true: changes wait")
    else:
        paused = ("False", "Reconciling", "")

    computed = [
        condition(kind, *values, obs.generation, now)
        for kind, values in (
            (READY, ready),
            (PROGRESSING, progressing),
            (DEGRADED, degraded),
            (PAUSED, paused),
        )
    ]
    phase: Phase
    if obs.deleting:
        phase = "Deleting"
    elif obs.paused:
        phase = "Paused"
    elif obs.refusals:
        phase = "Conflict"
    elif degraded[0] == "True":
        phase = "Degraded"
    elif ready[0] == "True":
        phase = "Ready"
    elif not present:
        phase = "Pending"
    else:
        phase = "Progressing"
    return Summary(
        conditions=tuple(merge_conditions(previous, computed)),
        phase=phase,
        components={
            n: ComponentStatus(ready=w.ready, desired=w.desired) if w else ComponentStatus()
            for n, w in workloads.items()
        },
        components_ready=f"{len(settled)}/{len(workloads)}",
    )


def condition(
    kind: str, status: str, reason: str, message: str, generation: int, now: datetime
) -> Condition:
    checked: ConditionStatus = "True" if status == "True" else "False"
    return Condition(
        type=kind,
        status=checked,
        reason=reason,
        message=message,
        last_transition_time=now,
        observed_generation=generation,
    )


def merge_conditions(
    previous: Sequence[Condition], computed: Sequence[Condition]
) -> list[Condition]:
    """``computed``, each keeping the previous ``lastTransitionTime`` of its type while
    its status is unchanged (a transition time that moved on every reconcile would say
    nothing)."""
    before = {c.type: c for c in previous}
    merged = []
    for cond in computed:
        old = before.get(cond.type)
        if old is not None and old.status == cond.status:
            cond = cond.model_copy(update={"last_transition_time": old.last_transition_time})
        merged.append(cond)
    return merged


def gateway_endpoint(service: Mapping[str, Any]) -> str:
    """Where clients reach a gateway Service: the load balancer's address once it has
    one, else the in-cluster DNS name."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    ports: list[Mapping[str, Any]] = spec.get("ports") or [{}]
    port = ports[0].get("port", 80)
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    for entry in ingress:
        host = entry.get("hostname") or entry.get("ip")
        if host:
            return f"{host}:{port}"
    return f"{meta.get('name', '')}.{meta.get('namespace', 'default')}.svc:{port}"


def owned_shards(region: str, shards: Sequence[MessageShard]) -> int:
    """Shards the region serves now: its own and any taken over from peers."""
    return sum(1 for s in shards if s.spec.owner == region)


def region_status(
    region: ChatRegion,
    summary: Summary,
    *,
    gateway: str = "",
    shards: Sequence[MessageShard] = (),
) -> ChatRegionStatus:
    """The ChatRegion status the reconcile writes. ``failover`` and the
    ``PeersHealthy`` condition belong to the failover loop: the condition is kept as it
    is, the block left out (a merge patch leaves it alone)."""
    previous = region.status
    conditions = list(summary.conditions)
    conditions.extend(
        c for c in (previous.conditions if previous else []) if c.type == PEERS_HEALTHY
    )
    return ChatRegionStatus(
        observed_generation=region.metadata.generation,
        phase=summary.phase,
        conditions=conditions,
        components=summary.components,
        components_ready=summary.components_ready,
        gateway_endpoint=gateway,
        owned_shards=owned_shards(region.region, shards),
    )


def pool_status(
    pool: PushPool, summary: Summary, *, replicas: int, ready_replicas: int, consumer_lag: int
) -> PushPoolStatus:
    """The PushPool status to write. ``replicas`` and ``selector`` feed the scale
    subresource: the autoscaler divides the lag by the one and counts pods by the other."""
    return PushPoolStatus(
        observed_generation=pool.metadata.generation,
        phase=summary.phase,
        conditions=list(summary.conditions),
        replicas=replicas,
        ready_replicas=ready_replicas,
        selector=pool_selector_text(pool),
        consumer_lag=consumer_lag,
    )
