"""The reconcile loop's I/O half: one ``Reconciler`` for the work queue's keys of the
three kinds. The ChatRegion's reconcile and finalizer live here; the shared steps in
``reconcile_steps``, the PushPool's and MessageShard's in ``reconcile_pool`` and
``reconcile_shard``. Peers and failover run in ``failover_loop``, on their own timer.

Each reconcile ends with a typed ``Outcome`` (counted by kind in
``tidings_operator_reconcile_total``); each child apply with a typed ``Change``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tidings_operator import metrics
from tidings_operator.children import ChildKey
from tidings_operator.clock import Clock, SystemClock
from tidings_operator.external import ExternalUnavailable
from tidings_operator.external_state import External, ExternalOutcome
from tidings_operator.failure import InvalidSpec, invalid_spec_message
from tidings_operator.kube import Kube
from tidings_operator.models import REGION_COMPONENTS, ChatRegion, MessageShard
from tidings_operator.names import CHAT_REGION, MESSAGE_SHARD, PUSH_POOL, component_name
from tidings_operator.outcome import Outcome
from tidings_operator.peer_clusters import PeerClusters
from tidings_operator.reconcile_pool import PoolReconcile
from tidings_operator.reconcile_shard import ShardReconcile
from tidings_operator.reconcile_steps import dump, is_ours, owner_key
from tidings_operator.resources import region_children
from tidings_operator.resources.dependencies import region_secret_refs
from tidings_operator.resources.refusal import Refusal
from tidings_operator.shard_merge import merge_shards
from tidings_operator.shard_status import owner_is_known, routed_shard
from tidings_operator.status import (
    Observation,
    deployment_state,
    gateway_endpoint,
    region_status,
    summarize,
)
from tidings_operator.workqueue import Key

__all__ = ["Reconciler", "is_ours", "owner_key"]

SHARD_OWNER_UNKNOWN = "ShardOwnerUnknown"


class Reconciler(PoolReconcile, ShardReconcile):
    """Handles work-queue keys of the three kinds."""

    def __init__(
        self,
        kube: Kube,
        external: External,
        *,
        clock: Clock | None = None,
        regions: frozenset[str] | None = None,
        peers: PeerClusters | None = None,
    ) -> None:
        super().__init__(kube, clock or SystemClock(), regions=regions)
        self.external = external
        self.peers = peers or PeerClusters(kube)
        """Peers' shards in their own clusters, as the failover loop last read them."""

    async def __call__(self, key: Key) -> None:
        started = time.perf_counter()
        try:
            handler = {
                CHAT_REGION: self.reconcile_region,
                PUSH_POOL: self.reconcile_pool,
                MESSAGE_SHARD: self.reconcile_shard,
            }[key.kind]
            result = await handler(key)
            if result is Outcome.GONE:
                metrics.forget_resource(key.kind, key.namespace, key.name)
        except InvalidSpec:  # the status says what to fix; the queue does not retry it
            metrics.RECONCILES.labels(key.kind, Outcome.INVALID.value).inc()
            raise
        except Exception as exc:
            metrics.RECONCILES.labels(key.kind, "error").inc()
            metrics.RECONCILE_FAILURES.labels(key.kind, type(exc).__name__).inc()
            if key.kind in (CHAT_REGION, PUSH_POOL):
                await self._report_failure(key, exc)
            raise
        finally:
            metrics.RECONCILE_SECONDS.labels(key.kind).observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(key.kind, result.value).inc()

    # ---- ChatRegion ------------------------------------------------------------------------

    async def reconcile_region(self, key: Key) -> Outcome:
        """Children, topics and keyspace, status. Peers and failover are not looked at
        here: ``failover_loop`` has its own timer and its own status block."""
        if not self.serves(key.name):  # a peer: its own operator runs it
            return Outcome.SKIPPED
        loaded = await self._load(key, ChatRegion)
        if isinstance(loaded, Outcome):
            return loaded
        body, region, paused = loaded
        live = await self._live_children(key.namespace, region.region)
        shard_objects = await self.kube.list(MESSAGE_SHARD, key.namespace)
        shards = merge_shards(
            [MessageShard.model_validate(s) for s in shard_objects],
            self.peers.shards(key.namespace, region.spec.peers),
        )
        # Peers in clusters of their own are regions too, though not ChatRegions here.
        regions = await self._region_names(key.namespace) | {p.name for p in region.spec.peers}
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
            self.clock.now(),
        )
        service = live.get(ChildKey("Service", component_name(region.region, "gateway")))
        status = region_status(
            region,
            summary,
            gateway=gateway_endpoint(service) if service else "",
            shards=[
                s for s in shards if s.spec.region == region.region or s.spec.owner == region.region
            ],
        )
        await self._write_status(key, body, dump(status), summary)
        return Outcome.PAUSED if paused else Outcome.CONVERGED

    async def _external_region(
        self, body: Mapping[str, Any], region: ChatRegion
    ) -> ExternalOutcome:
        try:
            login = await self.cassandra_login(region)
            return await self.external.sync_region(region, login)
        except ExternalUnavailable as exc:
            return ExternalOutcome(errors=[Refusal(exc.reason, str(exc))])

    async def cassandra_login(self, region: ChatRegion) -> tuple[str, str] | None:
        """(username, password) from the region's credentials Secret, None without one."""
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
        holds the object). A spec the models refuse cannot say reliably what to delete:
        the data is kept, an Event says so, and the deletion goes on (an invalid region
        must never be stuck Terminating)."""
        try:
            region = ChatRegion.model_validate(body)
        except ValidationError as exc:
            name = body["metadata"]["name"]
            message = (
                f"{invalid_spec_message(CHAT_REGION, name, exc)}. Deleted with its data kept "
                f"(topics tidings.{name}.*, its keyspace): remove them by hand if wanted"
            )
            await self._event(body, reason="ExternalRetained", message=message, warning=True)
            return [message]
        if region.spec.deletion_policy != "Delete":
            message = (
                f"deletionPolicy Retain: kept topics tidings.{region.region}.* and keyspace "
                f"{region.spec.cassandra.keyspace}"
            )
            await self._event(body, reason="ExternalRetained", message=message)
            return [message]
        login = await self.cassandra_login(region)
        done = await self.external.delete_region(region, login)
        for message in done:
            await self._event(body, reason="ExternalDeleted", message=message)
        return done
