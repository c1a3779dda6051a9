"""The MessageShard reconcile: the owner acknowledges the shard in its status."""

from __future__ import annotations

import logging

from tidings_operator import metrics
from tidings_operator.external import ExternalUnavailable
from tidings_operator.external_state import External
from tidings_operator.models import ChatRegion, MessageShard
from tidings_operator.names import CHAT_REGION, MESSAGE_SHARD
from tidings_operator.outcome import Outcome
from tidings_operator.reconcile_steps import Steps, deleting
from tidings_operator.resources.lag import waiting_age_s
from tidings_operator.shard_status import shard_status
from tidings_operator.workqueue import Key

log = logging.getLogger(__name__)


class ShardReconcile(Steps):
    external: External

    async def reconcile_shard(self, key: Key) -> Outcome:
        """The owner acknowledges the shard: status owner/epoch follow the spec once the
        owner region exists; lag is the delivery group's on the shard's partitions. An
        owner that is no ChatRegion here is marked ``Invalid`` by the home region's
        operator, the slots staying with the last owner that acknowledged them."""
        body = await self.kube.get(MESSAGE_SHARD, key.namespace, key.name)
        if body is None:
            metrics.forget_consumer_lag(MESSAGE_SHARD, key.namespace, key.name)
            return Outcome.GONE
        shard = MessageShard.model_validate(body)
        owner_body = await self.kube.get(CHAT_REGION, key.namespace, shard.spec.owner)
        if owner_body is not None:
            if not self.serves(shard.spec.owner):
                metrics.forget_consumer_lag(MESSAGE_SHARD, key.namespace, key.name)
                return Outcome.SKIPPED  # the owner's operator acknowledges it
            regions = {shard.spec.owner}
        else:
            metrics.forget_consumer_lag(MESSAGE_SHARD, key.namespace, key.name)
            if not self.serves(shard.spec.region):
                return Outcome.SKIPPED  # the home region's operator reports it
            regions = await self._region_names(key.namespace)
            # An owner in a cluster of its own is one of the home region's peers.
            home = await self.kube.get(CHAT_REGION, key.namespace, shard.spec.region)
            regions |= {str(p["name"]) for p in ((home or {}).get("spec") or {}).get("peers") or []}
        owner_deleting = owner_body is not None and deleting(owner_body)
        lag = None
        if owner_body is not None and not owner_deleting:
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
                    waiting_age_s(oldest_ms, self.clock.now()),
                )
            except ExternalUnavailable as exc:
                log.warning("lag of %s unknown: %s", key, exc)
        status = shard_status(
            shard, regions, owner_deleting=owner_deleting, lag=lag, now=self.clock.now()
        )
        self._track_ready(key, status["conditions"])
        before = body.get("status") or {}
        if status == before:
            return Outcome.CONVERGED
        if not await self._patch_status(key, status):
            return Outcome.GONE
        if status.get("phase") == "Invalid" and before.get("phase") != "Invalid":
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            await self._event(body, reason=ready["reason"], message=ready["message"], warning=True)
        return Outcome.INVALID if status.get("phase") == "Invalid" else Outcome.CONVERGED
