"""The state the operator keeps outside Kubernetes: Kafka topics and the Cassandra
keyspace. ``External`` is the port the reconciler calls; ``KafkaCassandra`` is the
engine that talks to the real systems (``kafka_admin``, ``cassandra_admin``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tidings_operator.cassandra_admin import (
    connect,
    converge_keyspace,
    delete_datacenter,
    ensure_schema,
    missing_tables,
    observe_keyspace,
)
from tidings_operator.kafka_admin import (
    GroupBacklog,
    apply_topic_decision,
    delete_topics,
    group_backlog,
    kafka_admin,
    observe_topics,
    topic_names,
)
from tidings_operator.models import ChatRegion, MessageShard, PushPool
from tidings_operator.names import MANAGER
from tidings_operator.resources.keyspace import KeyspacePlan
from tidings_operator.resources.lag import (
    pool_lag_source,
    pool_replicas,
    shard_lag,
    shard_lag_sources,
    total_lag,
)
from tidings_operator.resources.meta import digest
from tidings_operator.resources.refusal import Refusal
from tidings_operator.resources.topics import decide_topic, region_topics

CLIENT_ID = MANAGER
TOPIC_MISSING = "TopicMissing"
KEYSPACE_MISSING = "KeyspaceMissing"
TABLE_MISSING = "TableMissing"

CassandraLogin = tuple[str, str]


@dataclass(frozen=True)
class SchemaGap:
    """What a region's keyspace lacks: the keyspace itself, or some platform tables."""

    keyspace: bool = False
    tables: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.keyspace or bool(self.tables)


@dataclass(frozen=True)
class ExternalOutcome:
    refusals: list[Refusal] = field(default_factory=list)
    """Spec changes refused (shown as ``Ready=False`` with the reason; retried)."""
    errors: list[Refusal] = field(default_factory=list)
    """Failures to reach or change a system (``Degraded``; retried)."""
    done: list[str] = field(default_factory=list)
    """What changed this time, one line each, for Events."""


class External(Protocol):
    async def sync_region(
        self, region: ChatRegion, login: CassandraLogin | None
    ) -> ExternalOutcome:
        """Converge the region's topics and its datacenter's keyspace replication."""
        ...

    async def delete_region(self, region: ChatRegion, login: CassandraLogin | None) -> list[str]:
        """``deletionPolicy: Delete``: remove the region's topics and its datacenter's
        replicas (the keyspace itself when no other datacenter remains)."""
        ...

    async def pool_scale(self, pool: PushPool, region: ChatRegion) -> tuple[int, int]:
        """(consumer lag of the pool's group on the push topic, replicas to run)."""
        ...

    async def missing_topics(self, region: ChatRegion) -> list[str]:
        """The region's topics Kafka does not list now; when any is missing, the next
        ``sync_region`` converges at once instead of waiting for its resync. Nothing
        for a region not converged yet (its topics may not be created yet)."""
        ...

    async def missing_schema(self, region: ChatRegion, login: CassandraLogin | None) -> SchemaGap:
        """What of the region's keyspace Cassandra lacks now: the keyspace, or else some
        of the platform's tables (one connection); when anything, the next
        ``sync_region`` converges at once. Nothing for a region not converged yet."""
        ...

    async def shard_lag(self, shard: MessageShard, owner: ChatRegion) -> int:
        """Delivery records of the shard's recipients not yet consumed."""
        ...

    async def shard_oldest_ms(self, shard: MessageShard, owner: ChatRegion) -> int | None:
        """When the oldest of those records was accepted (ms since the epoch), or None
        when none waits (or it could not be read)."""
        ...


class KafkaCassandra:
    """``External`` on the real systems. A region's topics and keyspace are converged
    when its spec changes and at least every ``resync`` seconds (drift such as a
    deleted topic is repaired then), not on every reconcile: a Cassandra connection
    costs more than the rest of a reconcile together."""

    def __init__(
        self,
        *,
        resync: float = 60.0,
        lag_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resync = resync
        self._lag_ttl = lag_ttl
        self._clock = clock
        self._synced: dict[tuple[str, str], tuple[str, float]] = {}
        self._lags: dict[tuple[str, str, str], tuple[GroupBacklog, float]] = {}
        self._lag_locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def _group_lag(self, bootstrap: str, group: str, topic: str) -> dict[int, int]:
        return (await self._backlog(bootstrap, group, topic)).lag

    async def _backlog(self, bootstrap: str, group: str, topic: str) -> GroupBacklog:
        """``group_backlog``, shared for ``lag_ttl`` seconds: every shard of a region
        reads the same groups, and a thousand shards must not mean a thousand Kafka
        sessions."""
        key = (bootstrap, group, topic)
        async with self._lag_locks.setdefault(key, asyncio.Lock()):
            cached = self._lags.get(key)
            if cached is not None and self._clock() - cached[1] < self._lag_ttl:
                return cached[0]
            backlog = await group_backlog(bootstrap, group, topic)
            self._lags[key] = (backlog, self._clock())
            return backlog

    def _fresh(self, region: ChatRegion) -> bool:
        seen = self._synced.get((region.metadata.namespace, region.region))
        return (
            seen is not None
            and seen[0] == _external_digest(region)
            and self._clock() - seen[1] < self._resync
        )

    async def sync_region(
        self, region: ChatRegion, login: CassandraLogin | None
    ) -> ExternalOutcome:
        if self._fresh(region):
            return ExternalOutcome()
        outcome = ExternalOutcome()
        await self._sync_topics(region, outcome)
        await asyncio.to_thread(self._sync_keyspace, region, login, outcome)
        if not outcome.refusals and not outcome.errors:
            self._synced[(region.metadata.namespace, region.region)] = (
                _external_digest(region),
                self._clock(),
            )
        return outcome

    def _converged(self, region: ChatRegion) -> bool:
        """Whether this process has converged the region's topics and keyspace and read
        them back since it started or last saw something missing. Only then is a topic
        or keyspace not found one deleted behind the operator's back: before, it may
        simply not be created yet (a new region, or one whose recreate is retried, which
        its reconcile reports itself)."""
        return (region.metadata.namespace, region.region) in self._synced

    async def missing_topics(self, region: ChatRegion) -> list[str]:
        if not self._converged(region):
            return []
        wanted = [t.name for t in region_topics(region)]
        async with kafka_admin(region.spec.kafka.bootstrap_servers, CLIENT_ID) as admin:
            present = await topic_names(admin)
        missing = [name for name in wanted if name not in present]
        if missing:
            self._synced.pop((region.metadata.namespace, region.region), None)
        return missing

    async def missing_schema(self, region: ChatRegion, login: CassandraLogin | None) -> SchemaGap:
        if not self._converged(region):
            return SchemaGap()
        keyspace = region.spec.cassandra.keyspace

        def absent() -> SchemaGap:
            with self._session(region, login) as session:
                if observe_keyspace(session, keyspace) is None:
                    return SchemaGap(keyspace=True)
                return SchemaGap(tables=tuple(missing_tables(session, keyspace)))

        gap = await asyncio.to_thread(absent)
        if gap:
            self._synced.pop((region.metadata.namespace, region.region), None)
        return gap

    async def _sync_topics(self, region: ChatRegion, outcome: ExternalOutcome) -> None:
        wanted = region_topics(region)
        async with kafka_admin(region.spec.kafka.bootstrap_servers, CLIENT_ID) as admin:
            observed = await observe_topics(admin, [t.name for t in wanted])
            created = False
            for spec in wanted:
                decision = decide_topic(spec, observed.get(spec.name))
                outcome.refusals.extend(decision.refusals)
                if decision.changes:
                    await apply_topic_decision(admin, decision)
                    outcome.done.append(decision.describe())
                    created = created or decision.create is not None
            if created:  # read back: Ready only once Kafka lists every topic again
                listed = await topic_names(admin)
                if unlisted := [t.name for t in wanted if t.name not in listed]:
                    outcome.errors.append(
                        Refusal(
                            TOPIC_MISSING,
                            f"Kafka does not list topic {', '.join(unlisted)} after creating "
                            "it (a deletion may still be in progress); checked again shortly",
                        )
                    )

    def _sync_keyspace(
        self, region: ChatRegion, login: CassandraLogin | None, outcome: ExternalOutcome
    ) -> None:
        cassandra = region.spec.cassandra
        with self._session(region, login) as session:
            plan = converge_keyspace(session, cassandra.keyspace, cassandra.replication)
            outcome.refusals.extend(plan.refusals)
            outcome.done.extend(plan.statements)
            outcome.done.extend(f"to do by hand: {step}" for step in plan.follow_up)
            if not plan.refusals:
                applied = ensure_schema(session, cassandra.keyspace)
                if applied:
                    outcome.done.append(
                        f"keyspace {cassandra.keyspace}: schema migrations "
                        f"{', '.join(map(str, applied))} applied"
                    )
                    # read back: Ready only once Cassandra lists every table again
                    if unlisted := missing_tables(session, cassandra.keyspace):
                        outcome.errors.append(
                            Refusal(
                                TABLE_MISSING,
                                f"Cassandra does not list table {', '.join(unlisted)} of "
                                f"keyspace {cassandra.keyspace} after creating it; checked "
                                "again shortly",
                            )
                        )
            if plan.statements and observe_keyspace(session, cassandra.keyspace) is None:
                # read back: Ready only once Cassandra has the keyspace again
                outcome.errors.append(
                    Refusal(
                        KEYSPACE_MISSING,
                        f"Cassandra has no keyspace {cassandra.keyspace} after creating it; "
                        "checked again shortly",
                    )
                )

    @staticmethod
    def _session(region: ChatRegion, login: CassandraLogin | None) -> Any:
        cassandra = region.spec.cassandra
        username, password = login if login else (None, None)
        return connect(
            cassandra.contact_points,
            cassandra.port,
            username=username,
            password=password,
            local_dc=region.datacenter,
        )

    async def delete_region(self, region: ChatRegion, login: CassandraLogin | None) -> list[str]:
        self._synced.pop((region.metadata.namespace, region.region), None)
        async with kafka_admin(region.spec.kafka.bootstrap_servers, CLIENT_ID) as admin:
            deleted = await delete_topics(admin, [t.name for t in region_topics(region)])
        done = [f"deleted topic {name}" for name in deleted]

        def drop() -> KeyspacePlan:
            with self._session(region, login) as session:
                return delete_datacenter(session, region.spec.cassandra.keyspace, region.datacenter)

        plan = await asyncio.to_thread(drop)
        done.extend(plan.statements)
        return done

    async def pool_scale(self, pool: PushPool, region: ChatRegion) -> tuple[int, int]:
        source = pool_lag_source(pool)
        lag = total_lag(
            await self._group_lag(region.spec.kafka.bootstrap_servers, source.group, source.topic)
        )
        return lag, pool_replicas(pool, lag, pool.status.replicas if pool.status else None)

    async def shard_lag(self, shard: MessageShard, owner: ChatRegion) -> int:
        measured = [
            await self._group_lag(owner.spec.kafka.bootstrap_servers, source.group, source.topic)
            for source in shard_lag_sources(shard)
        ]
        return shard_lag(shard, measured)

    async def shard_oldest_ms(self, shard: MessageShard, owner: ChatRegion) -> int | None:
        found = [
            (await self._backlog(owner.spec.kafka.bootstrap_servers, s.group, s.topic)).oldest_ms
            for s in shard_lag_sources(shard)
        ]
        return min((ms for ms in found if ms is not None), default=None)


def _external_digest(region: ChatRegion) -> str:
    spec = region.spec
    return digest(spec.kafka.model_dump(mode="json"), spec.cassandra.model_dump(mode="json"))
