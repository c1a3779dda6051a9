"""The PushPool reconcile: the pool's Deployment scaled by its consumer lag, in the
region it names."""

from __future__ import annotations

from tidings_operator import metrics
from tidings_operator.children import ChildKey
from tidings_operator.external import ExternalUnavailable
from tidings_operator.external_state import External
from tidings_operator.models import ChatRegion, PushPool
from tidings_operator.names import CHAT_REGION, PUSH_POOL, push_pool_workload
from tidings_operator.outcome import Outcome
from tidings_operator.reconcile_steps import Steps, deleting, dump
from tidings_operator.resources import pool_children
from tidings_operator.resources.dependencies import pool_secret_refs
from tidings_operator.resources.refusal import Refusal
from tidings_operator.status import Observation, deployment_state, pool_status, summarize
from tidings_operator.workqueue import Key

REGION_MISSING = "RegionNotFound"


class PoolReconcile(Steps):
    external: External

    async def reconcile_pool(self, key: Key) -> Outcome:
        loaded = await self._load(key, PushPool)
        if isinstance(loaded, Outcome):
            metrics.forget_consumer_lag(PUSH_POOL, key.namespace, key.name)
            return loaded
        body, pool, paused = loaded
        if not self.serves(pool.spec.region):
            metrics.forget_consumer_lag(PUSH_POOL, key.namespace, key.name)
            return Outcome.SKIPPED
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
                if not deleting(region_body):  # (as in reconcile_shard)
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
            self.clock.now(),
        )
        status = pool_status(
            pool,
            summary,
            replicas=workload.desired if workload else 0,
            ready_replicas=workload.ready if workload else 0,
            consumer_lag=lag,
        )
        await self._write_status(key, body, dump(status), summary)
        return Outcome.PAUSED if paused else Outcome.CONVERGED
