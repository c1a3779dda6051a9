"""kopf wiring: watches, timers, the finalizer and start-up. Thin on purpose.

kopf watches the custom resources and the children, and handles peering, liveness and
the finalizer; every handler here only turns what it saw into a work-queue key (the
``Reconciler`` decides), except deletion, which must finish before kopf lets the object
go.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import kopf

from tidings_operator import metrics
from tidings_operator.external_state import External
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
from tidings_operator.reconciler import Reconciler, owner_key
from tidings_operator.workqueue import Key, WorkQueue

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
    """MessageShard status (owner, epoch, lag) refresh."""
    heartbeat_interval: float = 5.0
    """Seconds between renewals of each region's heartbeat Lease (which holds for three
    intervals) and between judgements of its peers."""
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
        kube = Kube.from_kubeconfig(options.kubeconfig)
        reconciler = Reconciler(
            kube,
            external,
            regions=options.regions,
            holder=options.holder,
            heartbeat_seconds=max(1, round(3 * options.heartbeat_interval)),
        )
        runtime["rt"] = Runtime(kube, WorkQueue(reconciler), reconciler)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own has none of kopf's default login handlers.
        return kopf.login_via_client(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        if "rt" in runtime:
            await rt().queue.close()
            await rt().kube.aclose()

    def trigger(key: Key) -> None:
        rt().queue.trigger(key)
        metrics.QUEUE_ACTIVE.set(len(rt().queue))

    regions_seen: dict[str, set[str]] = {}
    """ChatRegion names per namespace, from their watch events."""

    for kind, plural in PLURALS.items():

        async def on_event(
            event: kopf.RawEvent,
            name: str,
            namespace: str | None,
            resource: kopf.Resource,
            **_: Any,
        ) -> None:
            key = Key(str(resource.kind), namespace or "", name)
            gone = event.get("type") == "DELETED"
            if gone:
                rt().queue.forget(key)
            else:
                trigger(key)
            if key.kind == CHAT_REGION:
                seen = regions_seen.setdefault(key.namespace, set())
                (seen.discard if gone else seen.add)(key.name)
            elif key.kind == MESSAGE_SHARD:
                # Every region's shard map lists every shard: a move changes them all
                # (the old owner's included, which the new object no longer names).
                for region in sorted(regions_seen.get(key.namespace, ())):
                    trigger(Key(CHAT_REGION, key.namespace, region))

        kopf.on.event(
            group=GROUP,
            version=VERSION,
            plural=plural,
            registry=registry,
            id=f"watch-{plural}",
        )(on_event)

        interval = options.shard_interval if kind == MESSAGE_SHARD else options.reconcile_interval

        async def on_timer(
            name: str, namespace: str | None, resource: kopf.Resource, **_: Any
        ) -> None:
            trigger(Key(str(resource.kind), namespace or "", name))

        kopf.timer(
            group=GROUP,
            version=VERSION,
            plural=plural,
            interval=interval,
            registry=registry,
            id=f"resync-{plural}",
        )(on_timer)

    @kopf.timer(
        group=GROUP,
        version=VERSION,
        plural="chatregions",
        interval=options.heartbeat_interval,
        registry=registry,
        id="heartbeat",
    )
    async def heartbeat(name: str, namespace: str | None, **_: Any) -> None:
        key = Key(CHAT_REGION, namespace or "", name)
        if await rt().reconciler.heartbeat(key):
            trigger(key)  # judge the peers as often as they beat

    def served(name: str, **_: Any) -> bool:
        return rt().reconciler.serves(name)

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
        except Exception as exc:
            raise kopf.TemporaryError(
                f"deletion policy not carried out yet: {exc}", delay=10
            ) from exc

    async def on_child(event: kopf.RawEvent, **_: Any) -> None:
        obj = event.get("object") or {}
        if (key := owner_key(obj)) is not None:
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
