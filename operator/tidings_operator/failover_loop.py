"""The failover loop: a region's heartbeat, its sightings of its peers, their verdicts
and what to do about them. Runs on its own timer per region (``handlers``), apart from
the region's reconcile, which only reconciles children; writes only its own part of
the status (``failover_status``).

Each tick, for a region this operator runs:

1. probe every peer's data plane (gateway ``/readyz``, Kafka) at once;
2. renew the heartbeat Lease, publishing those sightings on it;
3. read every peer's Lease (its heartbeat and its own sightings), from the peer's own
   cluster when it runs in another (``peer_clusters``);
4. judge each peer by quorum (``quorum.judge_peer``) and decide (``quorum.decide``);
5. with ``Automatic`` and a peer failed by a majority, fence and take over this
   region's share of its shards (``failover.plan_takeover``);
6. write ``status.failover`` and ``PeersHealthy``; an Event per health change and per
   new decision;
7. with ``spec.dns``, keep the global gateway name's ``DNSEndpoint`` to the regions not
   failed (``resources.dns``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from tidings_operator import metrics
from tidings_operator.clock import Clock
from tidings_operator.events import names_of, post_event
from tidings_operator.failover import (
    Health,
    Heartbeat,
    PeerVerdict,
    heartbeat_lease_name,
    plan_takeover,
)
from tidings_operator.failover_status import (
    decision_changed,
    failover_status,
    previous_verdicts,
)
from tidings_operator.kube import ApiError, Kube
from tidings_operator.models import ChatRegion, MessageShard
from tidings_operator.models.chatregion import Peer
from tidings_operator.names import CHAT_REGION, MANAGER, MESSAGE_SHARD, PAUSED_ANNOTATION, is_true
from tidings_operator.outcome import Outcome
from tidings_operator.peer_clusters import PeerClusters
from tidings_operator.probes import Probe, probe_gateway, probe_kafka
from tidings_operator.quorum import (
    Action,
    Decision,
    Sighting,
    Vantage,
    decide,
    observe,
    publish,
    read_sightings,
)
from tidings_operator.quorum import judge_peer as judge
from tidings_operator.resources.dns import DNS_ENDPOINT, dns_endpoint_name, gateway_dns_endpoint
from tidings_operator.resources.heartbeat import heartbeat_lease, read_heartbeat
from tidings_operator.shard_merge import merge_shards, superseded
from tidings_operator.shard_moves import move_shards, planning_views
from tidings_operator.workqueue import Key

log = logging.getLogger(__name__)


class FailoverLoop:
    def __init__(
        self,
        kube: Kube,
        clock: Clock,
        *,
        holder: str = MANAGER,
        heartbeat_seconds: int = 15,
        gateway_probe: Probe = probe_gateway,
        kafka_probe: Probe = probe_kafka,
        peers: PeerClusters | None = None,
    ) -> None:
        self.kube = kube
        self.peers = peers or PeerClusters(kube)
        """Where each peer's Lease is read: its own cluster, or this one."""
        self.clock = clock
        self.holder = holder
        self.heartbeat_seconds = heartbeat_seconds
        self.gateway_probe = gateway_probe
        self.kafka_probe = kafka_probe
        self.health_changed: Callable[[Key], None] = lambda key: None
        """Told when a peer's health changed (the region's reconcile then writes it into
        the shard map, where clients read it)."""
        self._dns: dict[Key, dict[str, Any] | None] = {}
        """The DNSEndpoint spec each region last applied (None: none applied)."""
        self._no_dns_kind: set[Key] = set()
        """Regions told (by an Event) that their cluster has no DNSEndpoint kind."""
        self._sightings: dict[Key, dict[str, Sighting]] = {}
        """What each region last published (read back from its Lease after a restart,
        so a run of failed checks keeps its start)."""

    async def tick(self, key: Key) -> Outcome:
        body = await self.kube.get(CHAT_REGION, key.namespace, key.name)
        if body is None:
            self._sightings.pop(key, None)
            return Outcome.GONE
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return Outcome.DELETING
        try:
            region = ChatRegion.model_validate(body)
        except ValidationError:
            return Outcome.INVALID  # the reconcile says what to fix
        paused = is_true(region.metadata.annotations, PAUSED_ANNOTATION)
        sightings = await self._published(key)
        if region.spec.peers and not paused:
            sightings = await self._observe(region, sightings)
        await self._beat(key, region, sightings)
        if await self.peers.refresh_shards(key.namespace, region.spec.peers):
            self.health_changed(key)  # the shard map publishes peers' shards too
            await self._drop_superseded(key, region)
        if paused:
            return Outcome.PAUSED  # alive (the heartbeat), judging nothing
        if not region.spec.peers:
            await self._point_dns(key, body, region, [])
            return Outcome.CONVERGED
        previous = previous_verdicts(region)
        verdicts = await self._judge(body, region, sightings, previous)
        decision = decide(region.spec.failover.policy, len(region.spec.peers) + 1, verdicts)
        if decision.action is Action.TAKE_OVER:
            healthy = [v.name for v in verdicts if v.health is Health.HEALTHY]
            for failed in decision.failed:
                await self._take_over(body, region, failed, healthy)
        await self._write(key, body, region, verdicts, decision)
        if any(v.name not in previous or previous[v.name].health is not v.health for v in verdicts):
            self.health_changed(key)
        await self._point_dns(key, body, region, verdicts)
        return Outcome.CONVERGED

    async def _point_dns(
        self, key: Key, body: Mapping[str, Any], region: ChatRegion, verdicts: list[PeerVerdict]
    ) -> None:
        """Apply the global name's DNSEndpoint when what it should say changed (delete
        it when ``spec.dns`` went); a cluster without ExternalDNS's CRD gets a Warning
        Event once, and everything else goes on."""
        healthy = {region.region} | {v.name for v in verdicts if v.health is not Health.FAILED}
        wanted = gateway_dns_endpoint(region, healthy)
        spec = None if wanted is None else wanted["spec"]
        if key in self._dns and self._dns[key] == spec:
            return
        try:
            if wanted is None:
                await self.kube.delete(DNS_ENDPOINT, key.namespace, dns_endpoint_name(key.name))
            else:
                await self.kube.apply(wanted)
        except ApiError as exc:
            if not exc.not_found:
                raise
            if key not in self._no_dns_kind:  # said once per region and process
                self._no_dns_kind.add(key)
                await post_event(
                    self.kube,
                    body,
                    reason="DNSEndpointUnavailable",
                    message="spec.dns is set but this cluster has no DNSEndpoint kind "
                    "(externaldns.k8s.io/v1alpha1): install ExternalDNS's CRD, or remove "
                    f"spec.dns ({exc.message})",
                    warning=True,
                )
            self._dns.pop(key, None)  # tried again next tick: the CRD may come
            return
        self._no_dns_kind.discard(key)
        self._dns[key] = spec
        if region.spec.dns is not None and spec is not None:
            targets = [e["setIdentifier"] for e in spec["endpoints"]]
            log.info("%s: %s points at %s", region.region, region.spec.dns.hostname, targets)

    async def _published(self, key: Key) -> dict[str, Sighting]:
        if key not in self._sightings:
            lease = await self.kube.get("Lease", key.namespace, heartbeat_lease_name(key.name))
            self._sightings[key] = read_sightings(lease)
        return self._sightings[key]

    async def _observe(
        self, region: ChatRegion, previous: Mapping[str, Sighting]
    ) -> dict[str, Sighting]:
        results = await asyncio.gather(*(self._probe(peer) for peer in region.spec.peers))
        now = self.clock.now()
        sightings = {}
        for peer, (probes, problems) in zip(region.spec.peers, results, strict=True):
            seen = observe(peer.name, probes, problems, previous.get(peer.name), now)
            if seen is not None:
                sightings[peer.name] = seen
        return sightings

    async def _probe(self, peer: Peer) -> tuple[int, list[str]]:
        checks = []
        if peer.gateway_endpoint:
            checks.append(self.gateway_probe(peer.gateway_endpoint))
        if peer.kafka_bootstrap_servers:
            checks.append(self.kafka_probe(peer.kafka_bootstrap_servers))
        problems = [p for p in await asyncio.gather(*checks) if p is not None]
        return len(checks), problems

    async def _beat(self, key: Key, region: ChatRegion, sightings: dict[str, Sighting]) -> None:
        await self.kube.apply(
            heartbeat_lease(
                region,
                holder=self.holder,
                now=self.clock.now(),
                duration_seconds=self.heartbeat_seconds,
                observations=publish(sightings),
            )
        )
        self._sightings[key] = sightings
        metrics.HEARTBEATS.labels(region.region).inc()

    async def _judge(
        self,
        body: Mapping[str, Any],
        region: ChatRegion,
        mine: Mapping[str, Sighting],
        previous: Mapping[str, PeerVerdict],
    ) -> list[PeerVerdict]:
        namespace = region.metadata.namespace
        found = await asyncio.gather(
            *(self.peers.lease(namespace, peer) for peer in region.spec.peers)
        )
        leases = {peer.name: lease for peer, lease in zip(region.spec.peers, found, strict=True)}
        now = self.clock.now()
        regions = len(region.spec.peers) + 1
        own_beat = Heartbeat(now, self.heartbeat_seconds)  # this operator runs: current
        verdicts = []
        for peer in region.spec.peers:
            vantages = [Vantage(region.region, mine.get(peer.name), own_beat)]
            vantages += [
                Vantage(other, read_sightings(lease).get(peer.name), read_heartbeat(lease))
                for other, lease in leases.items()
                if other != peer.name
            ]
            before = previous.get(peer.name)
            verdict = judge(
                peer.name,
                read_heartbeat(leases[peer.name]),
                vantages,
                regions,
                before,
                now,
                region.spec.failover.detection_window_seconds,
            )
            if problem := self.peers.problem(namespace, peer.name):
                verdict = replace(verdict, message=f"{verdict.message}; its cluster: {problem}")
            for health in Health:
                metrics.PEER_HEALTH.labels(region.region, peer.name, health.value).set(
                    int(health is verdict.health)
                )
            if before is None or before.health is not verdict.health:
                metrics.PEER_HEALTH_CHANGES.labels(verdict.health.value).inc()
                log.info(
                    "%s sees peer %s %s: %s",
                    region.region,
                    peer.name,
                    verdict.health,
                    verdict.message,
                )
                await post_event(
                    self.kube,
                    body,
                    reason=f"Peer{verdict.health.value}",
                    message=f"peer {peer.name}: {verdict.message}",
                    warning=verdict.health in (Health.SUSPECT, Health.FAILED),
                )
            verdicts.append(verdict)
        return verdicts

    async def _take_over(
        self, body: Mapping[str, Any], region: ChatRegion, failed: str, healthy: list[str]
    ) -> None:
        namespace = region.metadata.namespace
        local, merged = await self._shards(namespace, region)
        views = planning_views(local, merged)
        moves = plan_takeover(failed, region.region, healthy, views)
        if not moves:
            return
        here = {s.metadata.name for s in local}
        elsewhere = {s.metadata.name: s for s in merged if s.metadata.name not in here}
        result = await move_shards(self.kube, namespace, moves, elsewhere=elsewhere, adopter=body)
        for move in result.moved:
            metrics.SHARD_MOVES.labels("automatic").inc()
            log.warning("failover: %s", move.describe())
            await post_event(
                self.kube,
                body,
                reason="ShardTakenOver",
                message=f"{failed} failed: {move.describe()}",
            )
        home = await self.kube.get(CHAT_REGION, namespace, failed)
        if home is not None and result.moved:
            await post_event(
                self.kube,
                home,
                reason="ShardsTakenOver",
                message=f"{len(result.moved)} shards fenced and moved to {region.region}: "
                f"{names_of(m.shard for m in result.moved)}",
                warning=True,
            )
        for move, why in result.refused:
            log.info("failover: %s not made (%s); re-planned next time", move.describe(), why)

    async def _drop_superseded(self, key: Key, region: ChatRegion) -> None:
        """Delete the copies this region made of peers' shards that a higher epoch
        elsewhere replaced (a failback, or a later move): they route nothing any more."""
        local, merged = await self._shards(key.namespace, region)
        for name in superseded(local, merged):
            await self.kube.delete(MESSAGE_SHARD, key.namespace, name)
            log.info("%s: copy of shard %s deleted: a newer epoch replaced it", key.name, name)

    async def _shards(
        self, namespace: str, region: ChatRegion
    ) -> tuple[list[MessageShard], list[MessageShard]]:
        """This cluster's MessageShards, and every region's merged with them."""
        local = [
            MessageShard.model_validate(s) for s in await self.kube.list(MESSAGE_SHARD, namespace)
        ]
        return local, merge_shards(local, self.peers.shards(namespace, region.spec.peers))

    async def _write(
        self,
        key: Key,
        body: Mapping[str, Any],
        region: ChatRegion,
        verdicts: list[PeerVerdict],
        decision: Decision,
    ) -> None:
        patch = failover_status(region, verdicts, decision, self.clock.now())
        before = body.get("status") or {}
        if all(before.get(k) == v for k, v in patch.items()):
            return
        try:
            await self.kube.patch_status(CHAT_REGION, key.namespace, key.name, patch)
        except ApiError as exc:
            if exc.not_found:
                return
            raise
        if decision_changed(region, decision):
            log.info(
                "%s failover decision %s: %s", region.region, decision.reason, decision.message
            )
            await post_event(
                self.kube,
                body,
                reason=decision.reason,
                message=decision.message,
                warning=decision.action in (Action.TAKE_OVER, Action.NO_QUORUM, Action.MANUAL),
            )
