"""What the watches have shown, and which MessageShards and PushPools are due a resync.

Level-based reconciling needs a periodic look at every object, but a kopf timer makes
kopf put its finalizer on every object it times: MessageShards and PushPools would then
block their own deletion (and their namespace's) whenever no operator runs. Only
ChatRegions carry timers (they hold a finalizer for their deletion policy anyway); each
region's timer resyncs the shards it owns and the pools it runs from this inventory,
which the watch events keep. Pure: no kopf, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tidings_operator.names import CHAT_REGION, MESSAGE_SHARD, PUSH_POOL
from tidings_operator.workqueue import Key

ROUTE_FIELDS = ("region", "firstSlot", "lastSlot", "owner", "epoch")
"""The MessageShard spec fields every region's shard map is made of."""


@dataclass
class Inventory:
    intervals: Mapping[str, float]
    """Seconds between resyncs of each kind (``MessageShard``, ``PushPool``)."""
    _regions: dict[str, set[str]] = field(default_factory=dict)
    _region_of: dict[Key, str] = field(default_factory=dict)
    _routes: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    _last: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def seen(self, key: Key, body: Mapping[str, Any]) -> bool:
        """Record a watched object; True when it changes what shard maps say (a
        MessageShard's slots, owner or epoch; status writes do not)."""
        spec = body.get("spec") or {}
        if key.kind == CHAT_REGION:
            self._regions.setdefault(key.namespace, set()).add(key.name)
            return False
        # The operator that resyncs a shard is its owner's; a pool's, its region's.
        region = spec.get("owner") if key.kind == MESSAGE_SHARD else spec.get("region")
        if isinstance(region, str):
            self._region_of[key] = region
        if key.kind != MESSAGE_SHARD:
            return False
        route = tuple(spec.get(f) for f in ROUTE_FIELDS)
        changed = self._routes.get(key) != route
        self._routes[key] = route
        return changed

    def gone(self, key: Key) -> None:
        if key.kind == CHAT_REGION:
            self._regions.get(key.namespace, set()).discard(key.name)
            for kind in (MESSAGE_SHARD, PUSH_POOL):
                self._last.pop((key.namespace, key.name, kind), None)
        self._region_of.pop(key, None)
        self._routes.pop(key, None)

    def regions(self, namespace: str) -> list[str]:
        return sorted(self._regions.get(namespace, ()))

    def due(self, namespace: str, region: str, now: float) -> list[Key]:
        """The shards ``region`` owns and the pools it runs whose kind's interval has
        passed since this region last resynced them (then marked as resynced at
        ``now``)."""
        found: list[Key] = []
        for kind in (MESSAGE_SHARD, PUSH_POOL):
            mark = (namespace, region, kind)
            last = self._last.get(mark)
            if last is not None and now - last < self.intervals[kind]:
                continue
            self._last[mark] = now
            found += sorted(
                k
                for k, r in self._region_of.items()
                if k.kind == kind and k.namespace == namespace and r == region
            )
        return found
