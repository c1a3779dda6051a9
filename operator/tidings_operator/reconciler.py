"""The reconcile loop's I/O half: read the cluster, call the pure builders and
decisions, apply, write status.

Every reconcile starts from what is there now (the object fetched fresh, its children
listed), never from the watch event that triggered it, so any trigger (spec change,
child deleted, timer) leads to the same converged state.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from tidings_operator import metrics
from tidings_operator.children import (
    ChildKey,
    Manifest,
    change_of,
    index_live,
    is_unmanaged,
    key_of,
    plan_children,
)
from tidings_operator.external import ExternalUnavailable
from tidings_operator.external_state import External, ExternalOutcome
from tidings_operator.failover import (
    Health,
    PeerObservation,
    PeerVerdict,
    heartbeat_lease_name,
    judge_peer,
    plan_takeover,
)
from tidings_operator.failure import describe_failure, failed_status
from tidings_operator.kube import ApiError, Kube
from tidings_operator.models import REGION_COMPONENTS, ChatRegion, MessageShard, PushPool
from tidings_operator.names import (
    CHAT_REGION,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    MESSAGE_SHARD,
    PAUSED_ANNOTATION,
    PUSH_POOL,
    component_name,
    is_true,
    push_pool_workload,
)
from tidings_operator.resources import pool_children, region_children
from tidings_operator.resources.dependencies import (
    SecretRef,
    keep_settings_hash,
    missing_secrets,
    pool_secret_refs,
    region_secret_refs,
    secret_keys,
    secret_names_of,
)
from tidings_operator.resources.heartbeat import heartbeat_lease, read_heartbeat
from tidings_operator.resources.lag import waiting_age_s
from tidings_operator.resources.podhealth import ComponentPods, component_pods
from tidings_operator.resources.refusal import Refusal
from tidings_operator.shard_moves import move_shards, shard_views
from tidings_operator.shard_status import owner_is_known, routed_shard, shard_status
from tidings_operator.status import (
    Observation,
    Summary,
    deployment_state,
    gateway_endpoint,
    pool_status,
    previous_verdicts,
    region_status,
    summarize,
)
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
REGION_MISSING = "RegionNotFound"
SHARD_OWNER_UNKNOWN = "ShardOwnerUnknown"


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


class Reconciler:
    """Handles work-queue keys of the three kinds."""

    def __init__(
        self,
        kube: Kube,
        external: External,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC).replace(microsecond=0),
        regions: frozenset[str] | None = None,
        holder: str = MANAGER,
        heartbeat_seconds: int = 15,
        probe: Probe | None = None,
    ) -> None:
        self.kube = kube
        self.external = external
        self.now = now
        self.regions = regions
        """The regions this operator runs (None: every region it watches). Others are
        only peers to it: it reads their heartbeats and may take their shards over."""
        self.holder = holder
        self.heartbeat_seconds = heartbeat_seconds
        self.probe = probe or probe_gateway
        self._paused: dict[str, set[Key]] = {}

    def serves(self, region: str) -> bool:
        return self.regions is None or region in self.regions

    async def __call__(self, key: Key) -> None:
        started = time.perf_counter()
        try:
            handler = {
                CHAT_REGION: self.reconcile_region,
                PUSH_POOL: self.reconcile_pool,
                MESSAGE_SHARD: self.reconcile_shard,
            }[key.kind]
            result = await handler(key)
            if result == "gone":
                metrics.forget_resource(key.kind, key.namespace, key.name)
        except Exception as exc:
            metrics.RECONCILES.labels(key.kind, "error").inc()
            metrics.RECONCILE_FAILURES.labels(key.kind, type(exc).__name__).inc()
            if key.kind in (CHAT_REGION, PUSH_POOL):
                await self._report_failure(key, exc)
            raise
        finally:
            metrics.RECONCILE_SECONDS.labels(key.kind).observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(key.kind, result).inc()

    # ---- shared steps --------------------------------------------------------------------

    async def _report_failure(self, key: Key, exc: Exception) -> None:
        """Say in the status that the reconcile of this generation failed (the work
        queue retries it). Best effort: the API server may be what failed."""
        try:
            body = await self.kube.get(key.kind, key.namespace, key.name)
            if body is None or _deleting(body):
                return
            generation = int((body.get("metadata") or {}).get("generation", 0))
            failure = describe_failure(exc)
            before = body.get("status") or {}
            status = failed_status(before, generation, failure, self.now())
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
    ) -> tuple[Mapping[str, Any], Owner, bool] | str:
        """(body, model, paused) of the object to reconcile, or the result that says why
        there is nothing to do: gone, being deleted (the finalizer's turn) or invalid."""
        body = await self.kube.get(key.kind, key.namespace, key.name)
        if body is None:
            self._track_paused(key, False)
            return "gone"
        if _deleting(body):
            return "deleting"
        try:
            obj = model.model_validate(body)
        except ValidationError as exc:
            return await self._invalid(key, body, exc)
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
        return component_pods(pods, self.now())

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
        changes: list[tuple[str, ChildKey]] = []
        for obj in plan.apply:
            key = key_of(obj)
            try:
                after = await self.kube.apply(obj)
            except ApiError as exc:
                errors.append(Refusal(APPLY_FAILED, f"applying {key} failed: {exc.message}"))
                continue
            if change := change_of(live.get(key), after):
                changes.append((change, key))
            live[key] = after
        for obj in plan.create:
            key = key_of(obj)
            try:
                live[key] = await self.kube.create(obj)
            except ApiError as exc:
                if not exc.conflict:
                    errors.append(Refusal(APPLY_FAILED, f"creating {key} failed: {exc.message}"))
                continue
            changes.append(("Created", key))
        for key in plan.prune:
            if await self.kube.delete(key.kind, owner["metadata"]["namespace"], key.name):
                changes.append(("Deleted", key))
            live.pop(key, None)
        for (change, kind), names in group_changes(changes).items():
            metrics.CHILD_CHANGES.labels(kind, change).inc(len(names))
            message = f"{change.lower()} {kind} {_names_of(names)}"
            log.info("%s %s: %s", owner["kind"], owner["metadata"]["name"], message)
            await self._event(owner, reason=f"Child{change}", message=message)
        return errors

    async def _event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, warning: bool = False
    ) -> None:
        """Events are best-effort: a namespace being terminated refuses new ones, and a
        refused Event must not hold up the reconcile or the finalizer that posts it."""
        try:
            await self.kube.event(involved, reason=reason, message=message, warning=warning)
        except ApiError as exc:
            metrics.EVENTS_DROPPED.labels(reason).inc()
            log.warning(
                "event %s about %s not posted: %s", reason, involved["metadata"]["name"], exc
            )

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
        if status == before or not await self._patch_status(key, status):
            return
        if (event := phase_event(before.get("phase"), summary)) is not None:
            reason, message, warning = event
            await self._event(body, reason=reason, message=message, warning=warning)

    async def _invalid(self, key: Key, body: Mapping[str, Any], exc: ValidationError) -> str:
        """A stored object the models refuse (an older CRD let it in): say so, touch nothing."""
        message = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        refusal = Refusal(INVALID_SPEC, f"the spec is not valid: {message}")
        generation = int((body.get("metadata") or {}).get("generation", 0))
        summary = summarize(
            Observation(generation=generation, workloads={}, refusals=[refusal]),
            [],
            self.now(),
        )
        status = {
            "observedGeneration": generation,
            "phase": summary.phase,
            "conditions": [_dump(c) for c in summary.conditions],
        }
        await self._write_status(key, body, status, summary)
        return "invalid"

    # ---- ChatRegion ------------------------------------------------------------------------

    async def reconcile_region(self, key: Key) -> str:
        if not self.serves(key.name):  # a peer: its own operator runs it
            return "skipped"
        loaded = await self._load(key, ChatRegion)
        if isinstance(loaded, str):
            return loaded
        body, region, paused = loaded
        live = await self._live_children(key.namespace, region.region)
        verdicts: list[PeerVerdict] | None = None
        if not paused and region.spec.peers:
            verdicts = await self._watch_peers(body, region)
        shard_objects = await self.kube.list(MESSAGE_SHARD, key.namespace)
        shards = [MessageShard.model_validate(s) for s in shard_objects]
        regions = await self._region_names(key.namespace)
        errors: list[Refusal] = [
            Refusal(
                SHARD_OWNER_UNKNOWN,
                f"MessageShard {s.metadata.name}: spec.owner {s.spec.owner} is not a ChatRegion "
                f"of this namespace; its slots stay with {routed_shard(s, regions).owner_region}",
            )
            for s in shards
            if s.spec.region == region.region and not owner_is_known(s, regions)
        ]
        outcome = ExternalOutcome()
        if not paused:
            versions, missing = await self._read_secrets(key.namespace, region_secret_refs(region))
            desired = region_children(
                region, shards=[routed_shard(s, regions) for s in shards], secret_versions=versions
            )
            if missing:
                desired = self._hold_rollout(desired, live)
            errors = [*errors, *missing, *await self._converge(body, desired, live)]
            outcome = await self._external_region(body, region)
            for done in outcome.done:
                await self._event(body, reason="ExternalUpdated", message=done)
        metrics.set_refusals(
            CHAT_REGION, key.namespace, key.name, [r.reason for r in outcome.refusals]
        )
        workloads = {
            component: (
                deployment_state(dep)
                if (
                    dep := live.get(
                        ChildKey("Deployment", component_name(region.region, component))
                    )
                )
                else None
            )
            for component in REGION_COMPONENTS
        }
        summary = summarize(
            Observation(
                generation=region.metadata.generation,
                workloads=workloads,
                refusals=outcome.refusals,
                errors=[*errors, *outcome.errors],
                paused=paused,
                pods=await self._pods(key.namespace, region.region),
            ),
            region.status.conditions if region.status else [],
            self.now(),
        )
        service = live.get(ChildKey("Service", component_name(region.region, "gateway")))
        status = region_status(
            region,
            summary,
            gateway=gateway_endpoint(service) if service else "",
            shards=[
                s for s in shards if s.spec.region == region.region or s.spec.owner == region.region
            ],
            peers=verdicts if region.spec.peers else [],
            now=self.now(),
        )
        await self._write_status(key, body, _dump(status), summary)
        return "paused" if paused else "ok"

    # ---- heartbeat and failover --------------------------------------------------------------

    async def heartbeat(self, key: Key) -> bool:
        """Renew the region's heartbeat Lease; True when the region watches peers (its
        reconcile should then run as often as the heartbeat, to judge them in time)."""
        if not self.serves(key.name):
            return False
        body = await self.kube.get(CHAT_REGION, key.namespace, key.name)
        if body is None or _deleting(body):
            return False
        try:
            region = ChatRegion.model_validate(body)
        except ValidationError:
            return False  # the reconcile reports it
        await self.kube.apply(
            heartbeat_lease(
                region,
                holder=self.holder,
                now=datetime.now(UTC),
                duration_seconds=self.heartbeat_seconds,
            )
        )
        metrics.HEARTBEATS.labels(region.region).inc()
        return bool(region.spec.peers)

    async def _watch_peers(self, body: Mapping[str, Any], region: ChatRegion) -> list[PeerVerdict]:
        """Judge every peer; with ``failover.policy: Automatic``, take over the shards of
        those that failed. Health changes and moves are Events."""
        namespace = region.metadata.namespace
        previous = previous_verdicts(region)
        now = self.now()
        verdicts = []
        for peer in region.spec.peers:
            lease = await self.kube.get("Lease", namespace, heartbeat_lease_name(peer.name))
            problem = await self.probe(peer.gateway_endpoint) if peer.gateway_endpoint else None
            before = previous.get(peer.name)
            verdict = judge_peer(
                PeerObservation(peer.name, read_heartbeat(lease), problem),
                before,
                now,
                region.spec.failover.detection_window_seconds,
            )
            for health in Health:
                metrics.PEER_HEALTH.labels(region.region, peer.name, health.value).set(
                    int(health is verdict.health)
                )
            if before is None or before.health is not verdict.health:
                metrics.PEER_HEALTH_CHANGES.labels(verdict.health.value).inc()
                await self._event(
                    body,
                    reason=f"Peer{verdict.health.value}",
                    message=f"peer {peer.name}: {verdict.message}",
                    warning=verdict.health in (Health.SUSPECT, Health.FAILED),
                )
            verdicts.append(verdict)
        if region.spec.failover.policy == "Automatic":
            healthy = [v.name for v in verdicts if v.health is Health.HEALTHY]
            for failed in (v for v in verdicts if v.health is Health.FAILED):
                await self._take_over(body, region, failed.name, healthy)
        return verdicts

    async def _take_over(
        self, body: Mapping[str, Any], region: ChatRegion, failed: str, healthy: list[str]
    ) -> None:
        namespace = region.metadata.namespace
        shards = shard_views(await self.kube.list(MESSAGE_SHARD, namespace))
        moves = plan_takeover(failed, region.region, healthy, shards)
        if not moves:
            return
        result = await move_shards(self.kube, namespace, moves)
        for move in result.moved:
            metrics.SHARD_MOVES.labels("automatic").inc()
            log.warning("failover: %s", move.describe())
            await self._event(
                body, reason="ShardTakenOver", message=f"{failed} failed: {move.describe()}"
            )
        home = await self.kube.get(CHAT_REGION, namespace, failed)
        if home is not None and result.moved:
            await self._event(
                home,
                reason="ShardsTakenOver",
                message=f"{len(result.moved)} shards fenced and moved to {region.region}: "
                f"{_names_of(m.shard for m in result.moved)}",
                warning=True,
            )
        for move, why in result.refused:
            log.info("failover: %s not made (%s); re-planned next time", move.describe(), why)

    async def _external_region(
        self, body: Mapping[str, Any], region: ChatRegion
    ) -> ExternalOutcome:
        try:
            login = await self._cassandra_login(region)
            return await self.external.sync_region(region, login)
        except ExternalUnavailable as exc:
            return ExternalOutcome(errors=[Refusal(exc.reason, str(exc))])

    async def _cassandra_login(self, region: ChatRegion) -> tuple[str, str] | None:
        ref = region.spec.cassandra.credentials_secret
        if ref is None:
            return None
        secret = await self.kube.get("Secret", region.metadata.namespace, ref.name)
        data = (secret or {}).get("data") or {}
        if secret is None:
            raise ExternalUnavailable(
                "CassandraCredentialsMissing",
                f"spec.cassandra.credentialsSecret: Secret {ref.name} not found in namespace "
                f"{region.metadata.namespace}",
            )
        if ref.username_key not in data or ref.password_key not in data:
            raise ExternalUnavailable(
                "CassandraCredentialsMissing",
                f"Secret {ref.name} needs keys {ref.username_key} and {ref.password_key}",
            )
        return (
            base64.b64decode(data[ref.username_key]).decode(),
            base64.b64decode(data[ref.password_key]).decode(),
        )

    async def finalize_region(self, body: Mapping[str, Any]) -> list[str]:
        """On deletion: ``Retain`` keeps topics and keyspace, ``Delete`` removes them.
        Raises while external systems are unreachable (kopf retries, the finalizer
        holds the object)."""
        region = ChatRegion.model_validate(body)
        if region.spec.deletion_policy != "Delete":
            message = (
                f"deletionPolicy Retain: kept topics tidings.{region.region}.* and keyspace "
                f"{region.spec.cassandra.keyspace}"
            )
            await self._event(body, reason="ExternalRetained", message=message)
            return [message]
        login = await self._cassandra_login(region)
        done = await self.external.delete_region(region, login)
        for message in done:
            await self._event(body, reason="ExternalDeleted", message=message)
        return done

    # ---- PushPool --------------------------------------------------------------------------

    async def reconcile_pool(self, key: Key) -> str:
        loaded = await self._load(key, PushPool)
        if isinstance(loaded, str):
            metrics.forget_consumer_lag(PUSH_POOL, key.namespace, key.name)
            return loaded
        body, pool, paused = loaded
        if not self.serves(pool.spec.region):
            metrics.forget_consumer_lag(PUSH_POOL, key.namespace, key.name)
            return "skipped"
        live = await self._live_children(key.namespace, pool.metadata.name)
        region_body = await self.kube.get(CHAT_REGION, key.namespace, pool.spec.region)
        errors: list[Refusal] = []
        lag = 0
        replicas = pool.spec.replicas
        if region_body is None:
            errors.append(
                Refusal(
                    REGION_MISSING,
                    f"ChatRegion {pool.spec.region} does not exist in namespace {key.namespace}; "
                    "create it or fix spec.region",
                )
            )
        elif not paused:
            region = ChatRegion.model_validate(region_body)
            try:
                if not _deleting(region_body):  # (as in reconcile_shard)
                    lag, replicas = await self.external.pool_scale(pool, region)
                    metrics.set_consumer_lag(
                        PUSH_POOL, key.namespace, key.name, pool.spec.region, lag
                    )
            except ExternalUnavailable as exc:
                errors.append(Refusal(exc.reason, str(exc)))
            versions, missing = await self._read_secrets(key.namespace, pool_secret_refs(pool))
            desired = pool_children(pool, region, secret_versions=versions, replicas=replicas)
            if missing:
                desired = self._hold_rollout(desired, live)
            errors.extend(missing)
            errors.extend(await self._converge(body, desired, live))
        dep = live.get(ChildKey("Deployment", push_pool_workload(pool.metadata.name)))
        workload = deployment_state(dep) if dep else None
        summary = summarize(
            Observation(
                generation=pool.metadata.generation,
                workloads={"push": workload},
                errors=errors,
                paused=paused,
                pods=await self._pods(key.namespace, pool.metadata.name),
            ),
            pool.status.conditions if pool.status else [],
            self.now(),
        )
        status = pool_status(
            pool,
            summary,
            replicas=workload.desired if workload else 0,
            ready_replicas=workload.ready if workload else 0,
            consumer_lag=lag,
        )
        await self._write_status(key, body, _dump(status), summary)
        return "paused" if paused else "ok"

    # ---- MessageShard ----------------------------------------------------------------------

    async def reconcile_shard(self, key: Key) -> str:
        """The owner acknowledges the shard: status owner/epoch follow the spec once the
        owner region exists; lag is the delivery group's on the shard's partitions. An
        owner that is no ChatRegion here is marked ``Invalid`` by the home region's
        operator, the slots staying with the last owner that acknowledged them."""
        body = await self.kube.get(MESSAGE_SHARD, key.namespace, key.name)
        if body is None:
            metrics.forget_consumer_lag(MESSAGE_SHARD, key.namespace, key.name)
            return "gone"
        shard = MessageShard.model_validate(body)
        owner_body = await self.kube.get(CHAT_REGION, key.namespace, shard.spec.owner)
        if owner_body is not None:
            if not self.serves(shard.spec.owner):
                metrics.forget_consumer_lag(MESSAGE_SHARD, key.namespace, key.name)
                return "skipped"  # the owner's operator acknowledges it
            regions = {shard.spec.owner}
        else:
            metrics.forget_consumer_lag(MESSAGE_SHARD, key.namespace, key.name)
            if not self.serves(shard.spec.region):
                return "skipped"  # the home region's operator reports it
            regions = await self._region_names(key.namespace)
        deleting = owner_body is not None and _deleting(owner_body)
        lag = None
        if owner_body is not None and not deleting:
            try:
                owner = ChatRegion.model_validate(owner_body)
                lag = await self.external.shard_lag(shard, owner)
                metrics.set_consumer_lag(
                    MESSAGE_SHARD, key.namespace, key.name, shard.spec.owner, lag
                )
                oldest_ms = await self.external.shard_oldest_ms(shard, owner)
                metrics.set_oldest_undelivered_age(
                    MESSAGE_SHARD,
                    key.namespace,
                    key.name,
                    shard.spec.owner,
                    waiting_age_s(oldest_ms, self.now()),
                )
            except ExternalUnavailable as exc:
                log.warning("lag of %s unknown: %s", key, exc)
        status = shard_status(shard, regions, owner_deleting=deleting, lag=lag, now=self.now())
        self._track_ready(key, status["conditions"])
        before = body.get("status") or {}
        if status == before:
            return "ok"
        if not await self._patch_status(key, status):
            return "gone"
        if status.get("phase") == "Invalid" and before.get("phase") != "Invalid":
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            await self._event(body, reason=ready["reason"], message=ready["message"], warning=True)
        return "invalid" if status.get("phase") == "Invalid" else "ok"

    async def _region_names(self, namespace: str) -> set[str]:
        regions = await self.kube.list(CHAT_REGION, namespace)
        return {str(r["metadata"]["name"]) for r in regions}


Probe = Callable[[str], Awaitable[str | None]]
"""A gateway health check: None when it answered ready, else what went wrong."""


async def probe_gateway(endpoint: str, timeout: float = 3.0) -> str | None:
    url = f"{endpoint.rstrip('/')}/readyz"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__} {exc}".strip()
    return None if response.is_success else f"{url}: HTTP {response.status_code}"


def _deleting(body: Mapping[str, Any]) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def _names_of(names: Iterable[str]) -> str:
    listed = list(names)
    return ", ".join(listed[:10]) + (f" and {len(listed) - 10} more" if len(listed) > 10 else "")


def group_changes(changes: Sequence[tuple[str, ChildKey]]) -> dict[tuple[str, str], list[str]]:
    """(change, kind) -> names, in order: one Event per group, so a thousand shards
    created make one Event, not a thousand."""
    grouped: dict[tuple[str, str], list[str]] = {}
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
