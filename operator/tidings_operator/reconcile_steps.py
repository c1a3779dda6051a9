"""The steps every reconcile is made of, shared by the three kinds: load the object
(gone, being deleted, invalid or paused), list its children, converge them, write the
status, report a failure. ``Reconciler`` chains them per kind.

Every reconcile starts from what is there now (the object fetched fresh, its children
listed), never from the watch event that triggered it, so any trigger (spec change,
child deleted, timer) leads to the same converged state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from tidings_operator import metrics
from tidings_operator.children import (
    ChildKey,
    Manifest,
    index_live,
    is_unmanaged,
    key_of,
    plan_children,
)
from tidings_operator.clock import Clock
from tidings_operator.events import names_of, post_event
from tidings_operator.failure import (
    InvalidSpec,
    describe_failure,
    failed_status,
    invalid_spec_message,
)
from tidings_operator.kube import ApiError, Kube
from tidings_operator.models import ChatRegion, PushPool
from tidings_operator.names import (
    CHAT_REGION,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    MESSAGE_SHARD,
    PAUSED_ANNOTATION,
    PUSH_POOL,
    is_true,
)
from tidings_operator.outcome import Change, Outcome, change_of
from tidings_operator.resources.dependencies import (
    SecretRef,
    keep_settings_hash,
    missing_secrets,
    secret_keys,
    secret_names_of,
)
from tidings_operator.resources.podhealth import ComponentPods, component_pods
from tidings_operator.resources.refusal import Refusal
from tidings_operator.status import Observation, Summary, summarize
from tidings_operator.workqueue import Key

log = logging.getLogger(__name__)

Owner = TypeVar("Owner", ChatRegion, PushPool)
"""The kinds whose reconcile owns children and can be paused."""

CHILD_KINDS = (
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    MESSAGE_SHARD,
)
"""Every kind a ChatRegion or PushPool creates, listed by label on each reconcile."""

APPLY_FAILED = "ApplyFailed"
INVALID_SPEC = "InvalidSpec"


def dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


class Steps:
    """The I/O every reconcile shares; one instance per operator."""

    def __init__(
        self,
        kube: Kube,
        clock: Clock,
        *,
        regions: frozenset[str] | None = None,
    ) -> None:
        self.kube = kube
        self.clock = clock
        self.regions = regions
        """The regions this operator runs (None: every region it watches). Others are
        only peers to it: it reads their heartbeats and may take their shards over."""
        self._paused: dict[str, set[Key]] = {}

    def serves(self, region: str) -> bool:
        return self.regions is None or region in self.regions

    async def _report_failure(self, key: Key, exc: Exception) -> None:
        """Say in the status that the reconcile of this generation failed (the work
        queue retries it). Best effort: the API server may be what failed."""
        try:
            body = await self.kube.get(key.kind, key.namespace, key.name)
            if body is None or deleting(body):
                return
            generation = int((body.get("metadata") or {}).get("generation", 0))
            failure = describe_failure(exc)
            before = body.get("status") or {}
            status = failed_status(before, generation, failure, self.clock.now())
            self._track_ready(key, status["conditions"])
            changed = status != before and await self._patch_status(key, status)
            if changed and before.get("phase") != "Degraded":
                await self._event(
                    body, reason=failure.reason, message=failure.message, warning=True
                )
        except Exception as report_exc:  # the original error is raised by the caller
            log.warning("could not report the failed reconcile of %s: %s", key, report_exc)

    def _track_paused(self, key: Key, paused: bool) -> None:
        keys = self._paused.setdefault(key.kind, set())
        (keys.add if paused else keys.discard)(key)
        metrics.PAUSED.labels(key.kind).set(len(keys))
        metrics.RESOURCE_PAUSED.labels(key.kind, key.namespace, key.name).set(int(paused))

    @staticmethod
    def _track_ready(key: Key, conditions: Iterable[Mapping[str, Any]]) -> None:
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        metrics.RESOURCE_READY.labels(key.kind, key.namespace, key.name).set(int(ready))

    async def _load(
        self, key: Key, model: type[Owner]
    ) -> tuple[Mapping[str, Any], Owner, bool] | Outcome:
        """(body, model, paused) of the object to reconcile, or the outcome that says why
        there is nothing to do: gone or being deleted (the finalizer's turn). Raises
        ``InvalidSpec`` (permanent: retrying cannot help) when the models refuse it."""
        body = await self.kube.get(key.kind, key.namespace, key.name)
        if body is None:
            self._track_paused(key, False)
            return Outcome.GONE
        if deleting(body):
            return Outcome.DELETING
        try:
            obj = model.model_validate(body)
        except ValidationError as exc:
            await self._invalid(key, body, exc)
            raise InvalidSpec(key.kind, key.name, exc) from exc
        paused = is_true(obj.metadata.annotations, PAUSED_ANNOTATION)
        self._track_paused(key, paused)
        return body, obj, paused

    async def _live_children(self, namespace: str, instance: str) -> dict[ChildKey, Manifest]:
        found: list[Manifest] = []
        for kind in CHILD_KINDS:
            found.extend(
                await self.kube.list(
                    kind, namespace, labels={INSTANCE_LABEL: instance, MANAGED_BY_LABEL: MANAGER}
                )
            )
        return index_live(found)

    async def _pods(self, namespace: str, instance: str) -> dict[str, ComponentPods]:
        """What the pods of each component say (one LIST per reconcile)."""
        pods = await self.kube.list(
            "Pod", namespace, labels={INSTANCE_LABEL: instance, MANAGED_BY_LABEL: MANAGER}
        )
        return component_pods(pods, self.clock.now())

    async def _read_secrets(
        self, namespace: str, refs: Sequence[SecretRef]
    ) -> tuple[dict[str, str], list[Refusal]]:
        """(Secret -> resourceVersion, so a rotation rolls the pods; the references
        whose Secret or key is missing)."""
        versions: dict[str, str] = {}
        keys: dict[str, frozenset[str] | None] = {}
        for name in secret_names_of(refs):
            secret = await self.kube.get("Secret", namespace, name)
            versions[name] = (secret or {}).get("metadata", {}).get("resourceVersion", "")
            keys[name] = secret_keys(secret)
        return versions, missing_secrets(refs, keys, namespace)

    def _hold_rollout(
        self, desired: Sequence[Manifest], live: Mapping[ChildKey, Manifest]
    ) -> list[Manifest]:
        return keep_settings_hash(desired, {(k.kind, k.name): v for k, v in live.items()})

    async def _converge(
        self, owner: Mapping[str, Any], desired: Sequence[Manifest], live: dict[ChildKey, Manifest]
    ) -> list[Refusal]:
        """Apply the plan; returns the children that could not be applied (retried by the
        next reconcile, reported as Degraded meanwhile)."""
        plan = plan_children(desired, live, owner["metadata"]["uid"])
        errors: list[Refusal] = []
        changes: list[tuple[Change, ChildKey]] = []
        for obj in plan.apply:
            key = key_of(obj)
            try:
                after = await self.kube.apply(obj)
            except ApiError as exc:
                errors.append(Refusal(APPLY_FAILED, f"applying {key} failed: {exc.message}"))
                continue
            changes.append((change_of(live.get(key), after), key))
            live[key] = after
        for obj in plan.create:
            key = key_of(obj)
            try:
                live[key] = await self.kube.create(obj)
            except ApiError as exc:
                if not exc.conflict:
                    errors.append(Refusal(APPLY_FAILED, f"creating {key} failed: {exc.message}"))
                continue
            changes.append((Change.CREATED, key))
        for key in plan.prune:
            if await self.kube.delete(key.kind, owner["metadata"]["namespace"], key.name):
                changes.append((Change.DELETED, key))
            live.pop(key, None)
        made = [(c, k) for c, k in changes if c is not Change.UNCHANGED]
        for done, child in made:  # one log line per change, one Event per group
            log.info("%s %s: %s %s", owner["kind"], owner["metadata"]["name"], child, done.lower())
        for (group, kind), names in group_changes(made).items():
            metrics.CHILD_CHANGES.labels(kind, group.value).inc(len(names))
            message = f"{group.lower()} {kind} {names_of(names)}"
            await self._event(owner, reason=f"Child{group.value}", message=message)
        return errors

    async def _event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, warning: bool = False
    ) -> None:
        await post_event(self.kube, involved, reason=reason, message=message, warning=warning)

    async def _patch_status(self, key: Key, status: Mapping[str, Any]) -> bool:
        """False when the object went away meanwhile (nothing left to report on)."""
        try:
            await self.kube.patch_status(key.kind, key.namespace, key.name, status)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    async def _write_status(
        self, key: Key, body: Mapping[str, Any], status: dict[str, Any], summary: Summary
    ) -> None:
        """Patch the status when it differs; an Event when the phase changes."""
        self._track_ready(key, status.get("conditions") or [])
        before = body.get("status") or {}
        # ``failover`` is the failover loop's block: the merge patch leaves it alone.
        if status == {k: v for k, v in before.items() if k != "failover"}:
            return
        if not await self._patch_status(key, status):
            return
        if (event := phase_event(before.get("phase"), summary)) is not None:
            reason, message, warning = event
            await self._event(body, reason=reason, message=message, warning=warning)

    async def _invalid(self, key: Key, body: Mapping[str, Any], exc: ValidationError) -> None:
        """A stored object the models refuse (an older CRD let it in): say what to fix,
        touch nothing."""
        refusal = Refusal(INVALID_SPEC, invalid_spec_message(key.kind, key.name, exc))
        generation = int((body.get("metadata") or {}).get("generation", 0))
        summary = summarize(
            Observation(generation=generation, workloads={}, refusals=[refusal]),
            [],
            self.clock.now(),
        )
        status = {
            "observedGeneration": generation,
            "phase": summary.phase,
            "conditions": [dump(c) for c in summary.conditions],
        }
        await self._write_status(key, body, status, summary)

    async def _region_names(self, namespace: str) -> set[str]:
        regions = await self.kube.list(CHAT_REGION, namespace)
        return {str(r["metadata"]["name"]) for r in regions}


def deleting(body: Mapping[str, Any]) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def group_changes(
    changes: Sequence[tuple[Change, ChildKey]],
) -> dict[tuple[Change, str], list[str]]:
    """(change, kind) -> names, in order: one Event per group, so a thousand shards
    created make one Event, not a thousand."""
    grouped: dict[tuple[Change, str], list[str]] = {}
    for change, key in changes:
        grouped.setdefault((change, key.kind), []).append(key.name)
    return grouped


def phase_event(before: str | None, summary: Summary) -> tuple[str, str, bool] | None:
    """(reason, message, warning) of the Event for a phase change, or None. The reason
    is the Ready condition's: it names what the phase is waiting for or refusing."""
    if before == summary.phase:
        return None
    ready = next(c for c in summary.conditions if c.type == "Ready")
    message = f"{before or 'New'} -> {summary.phase}" + (
        f": {ready.message}" if ready.message else ""
    )
    return ready.reason, message, summary.phase in ("Degraded", "Conflict")


def owner_key(obj: Mapping[str, Any]) -> Key | None:
    """The work-queue key of a child's controlling custom resource."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") in (CHAT_REGION, PUSH_POOL):
            return Key(str(ref["kind"]), str(meta.get("namespace", "")), str(ref["name"]))
    return None


def is_ours(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGER and not is_unmanaged(obj)
