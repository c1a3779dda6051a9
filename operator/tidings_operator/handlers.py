"""kopf wiring: watches, timers, the finalizer and start-up. Thin on purpose.

kopf watches the custom resources and the children, and handles peering, liveness and
the finalizer; every handler here only turns what it saw into a work-queue key (the
``Reconciler`` decides), except deletion, which must finish before kopf lets the object
go.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import kopf
import kopf.on as kopf_on

from tidings_operator import metrics
from tidings_operator.clock import SystemClock
from tidings_operator.external_state import External
from tidings_operator.failover_loop import FailoverLoop
from tidings_operator.kopf_fixes import keep_watching_terminating_namespaces
from tidings_operator.kube import Kube
from tidings_operator.names import (
    CHAT_REGION,
    GROUP,
    MANAGED_BY_LABEL,
    MANAGER,
    MESSAGE_SHARD,
    PUSH_POOL,
    VERSION,
    finalizer_for,
)
from tidings_operator.peer_clusters import PeerClusters
from tidings_operator.peering_pause import PauseChange, announce, report_peering_pauses
from tidings_operator.reconciler import Reconciler, owner_key
from tidings_operator.resync import Inventory
from tidings_operator.secret_users import SecretUsers
from tidings_operator.topic_watch import (
    keyspace_problem,
    mark_missing,
    missing_topics,
    topics_missing,
)
from tidings_operator.workqueue import Key, PermanentError, WorkQueue

log = logging.getLogger(__name__)

PLURALS = {CHAT_REGION: "chatregions", PUSH_POOL: "pushpools", MESSAGE_SHARD: "messageshards"}

CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("", "v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
)


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None = None
    reconcile_interval: float = 30.0
    watch_timeout: int = 300
    shard_interval: float = 60.0
    max_concurrent_reconciles: int = 8
    """Reconciles of one kind at once (see ``WorkQueue``)."""
    """MessageShard status (owner, epoch, lag) refresh."""
    heartbeat_interval: float = 5.0
    """Seconds between ticks of the failover loop: renewals of each region's heartbeat
    Lease (which holds for three intervals), probes and judgements of its peers."""
    topic_check_interval: float = 5.0
    """Seconds between listings of each region's Kafka topics (``topic_watch``)."""
    keyspace_check_interval: float = 10.0
    """Seconds between look-ups of each region's Cassandra keyspace (``topic_watch``)."""
    regions: frozenset[str] | None = None
    """The ChatRegions this operator runs; None: all it watches."""
    holder: str = MANAGER
    """Who renews the heartbeats (the Lease's holderIdentity)."""


@dataclass
class Runtime:
    """What the handlers share (kopf's ``memo``)."""

    kube: Kube
    queue: WorkQueue
    reconciler: Reconciler
    failover: FailoverLoop


def register(registry: kopf.OperatorRegistry, options: Options, external: External) -> None:
    """Register every handler on ``registry``."""
    keep_watching_terminating_namespaces()
    runtime: dict[str, Runtime] = {}

    def rt() -> Runtime:
        return runtime["rt"]

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = finalizer_for(options.regions)
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.watching.server_timeout = options.watch_timeout
        settings.watching.client_timeout = options.watch_timeout + 60
        settings.watching.connect_timeout = 30
        settings.posting.enabled = False  # we post our own Events, one per change
        # A region deleted while one of its timers runs (the topic and keyspace watches
        # run for about a second every few) keeps kopf's finalizer until kopf looks
        # again whether the timer stopped: every 60 s by default, a minute of
        # Terminating for nothing.
        settings.background.cancellation_polling = 1
        kube = Kube.from_kubeconfig(options.kubeconfig)
        clock = SystemClock()
        peers = PeerClusters(kube)  # read by the failover loop, published by the reconcile
        reconciler = Reconciler(kube, external, clock=clock, regions=options.regions, peers=peers)
        failover = FailoverLoop(
            kube,
            clock,
            holder=options.holder,
            heartbeat_seconds=max(1, round(3 * options.heartbeat_interval)),
            peers=peers,
        )
        queue = WorkQueue(reconciler, concurrency=options.max_concurrent_reconciles)
        failover.health_changed = queue.trigger  # the shard map publishes peers' health
        runtime["rt"] = Runtime(kube, queue, reconciler, failover)
        metrics.RECONCILES_RUNNING.set_function(lambda: queue.running)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own has none of kopf's default login handlers.
        return kopf.login_via_client(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        if "rt" in runtime:
            await rt().queue.close()
            await rt().failover.peers.aclose()
            await rt().kube.aclose()

    async def on_pause(change: PauseChange) -> None:
        if "rt" in runtime:
            await announce(rt().kube, change, rt().reconciler.serves)

    report_peering_pauses(on_pause)

    def trigger(key: Key) -> None:
        rt().queue.trigger(key)
        metrics.QUEUE_ACTIVE.set(len(rt().queue))

    secret_users = SecretUsers()
    watched = Inventory(
        {MESSAGE_SHARD: options.shard_interval, PUSH_POOL: options.reconcile_interval}
    )

    for plural in PLURALS.values():

        async def on_event(
            event: kopf.RawEvent,
            name: str,
            namespace: str | None,
            resource: kopf.Resource,
            **_: Any,
        ) -> None:
            key = Key(str(resource.kind), namespace or "", name)
            if event.get("type") == "DELETED":
                rt().queue.forget(key)
                watched.gone(key)
                secret_users.gone(key)
                metrics.forget_resource(key.kind, key.namespace, key.name)
                routes_changed = key.kind == MESSAGE_SHARD
            else:
                trigger(key)
                routes_changed = watched.seen(key, event.get("object") or {})
                secret_users.seen(key, event.get("object") or {})
            if routes_changed:
                # Every region's shard map lists every shard: a move changes them all
                # (the old owner's included, which the new object no longer names).
                for region in watched.regions(key.namespace):
                    trigger(Key(CHAT_REGION, key.namespace, region))

        kopf.on.event(
            group=GROUP,
            version=VERSION,
            plural=plural,
            registry=registry,
            id=f"watch-{plural}",
        )(on_event)

    def served(name: str, **_: Any) -> bool:
        return rt().reconciler.serves(name)

    # Timers only on the regions this operator runs: kopf puts its finalizer on whatever
    # it times (see ``resync``).
    def region_timer(id: str, interval: float) -> kopf_on.TimerDecorator:
        return kopf.timer(
            group=GROUP,
            version=VERSION,
            plural="chatregions",
            interval=interval,
            registry=registry,
            id=id,
            when=served,
        )

    @region_timer("resync-chatregions", options.reconcile_interval)
    async def resync(name: str, namespace: str | None, **_: Any) -> None:
        trigger(Key(CHAT_REGION, namespace or "", name))
        for key in watched.due(namespace or "", name, time.monotonic()):
            trigger(key)

    @region_timer("topic-watch", options.topic_check_interval)
    async def topic_watch(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
        key = Key(CHAT_REGION, namespace or "", name)
        # Looked at and marked outside any reconcile of the region: one in flight may be
        # creating the topics (a listing taken meanwhile would report a topic it has not
        # created yet), and would overwrite the status. It is not Ready from now until
        # the reconcile queued next has recreated the topics and read them back.
        async with rt().queue.exclusive(key):
            if missing := await missing_topics(external, body):
                await mark_missing(rt().kube, rt().reconciler.clock, key, topics_missing(missing))
        if missing:
            trigger(key)

    @region_timer("keyspace-watch", options.keyspace_check_interval)
    async def keyspace_watch(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
        login_of = rt().reconciler.cassandra_login
        key = Key(CHAT_REGION, namespace or "", name)
        async with rt().queue.exclusive(key):  # as topic_watch: no reconcile in flight
            if (problem := await keyspace_problem(external, body, login_of)) is not None:
                await mark_missing(rt().kube, rt().reconciler.clock, key, problem)
        if problem is not None:
            trigger(key)

    # The failover loop: heartbeat, sightings of the peers, verdicts, takeover. Its own
    # timer and status block; a failure is logged and the next tick tries again.
    @region_timer("heartbeat", options.heartbeat_interval)
    async def heartbeat(name: str, namespace: str | None, **_: Any) -> None:
        key = Key(CHAT_REGION, namespace or "", name)
        try:
            outcome = await rt().failover.tick(key)
        except Exception as exc:
            metrics.FAILOVER_TICKS.labels("error").inc()
            log.warning("failover loop of %s failed, next tick retries: %s", key, exc)
            return
        metrics.FAILOVER_TICKS.labels(outcome.value).inc()

    @kopf.on.delete(
        group=GROUP,
        version=VERSION,
        plural="chatregions",
        registry=registry,
        id="deletion-policy",
        when=served,  # another region's operator holds its own finalizer
    )
    async def finalize_region(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
        key = Key(CHAT_REGION, namespace or "", name)
        rt().queue.forget(key)
        try:
            async with rt().queue.exclusive(key):
                await rt().reconciler.finalize_region(dict(body))
        except PermanentError as exc:  # kopf lets the object go; the Event says why
            raise kopf.PermanentError(f"deletion policy cannot be carried out: {exc}") from exc
        except Exception as exc:
            raise kopf.TemporaryError(
                f"deletion policy not carried out yet: {exc}", delay=10
            ) from exc

    async def on_child(event: kopf.RawEvent, **_: Any) -> None:
        obj = event.get("object") or {}
        if (key := owner_key(obj)) is not None:
            trigger(key)

    # Secrets are the user's, not labelled as ours: every Secret event of the watched
    # namespaces is looked up in the index of the resources that name it.
    @kopf.on.event("", "v1", "secrets", registry=registry, id="secrets-used")
    async def on_secret(event: kopf.RawEvent, name: str, namespace: str | None, **_: Any) -> None:
        for key in secret_users.users(namespace or "", name):
            trigger(key)

    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(
            group=group,
            version=version,
            plural=plural,
            labels={MANAGED_BY_LABEL: MANAGER},
            registry=registry,
            id=f"child-{plural}",
        )(on_child)
