"""The shard map the operator publishes, followed while the process runs.

The operator writes the map to a ConfigMap mounted into every pod; the kubelet swaps the
file in place when a failover moves shards. This reads it at start-up (a bad map stops
the process with the reason) and then re-reads it every ``POLL_S``: a changed, valid map
replaces ``ctx.shard_map``; an invalid one is logged and counted, and the last good map
stays in use.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tidings.aio import wait_event
from tidings.core.shardmap import ShardMap, ShardMapError, parse_shard_map
from tidings.services.context import Context

log = logging.getLogger("tidings.shardmap")

POLL_S = 2.0
"""How often the file is re-read (the kubelet itself refreshes mounted ConfigMaps about
once a minute)."""


class ShardMapFile:
    def __init__(self, ctx: Context, path: Path) -> None:
        self.ctx, self.path = ctx, path
        self._seen: bytes | None = None

    def load(self) -> ShardMap:
        """Read and apply the map now; raises ``ShardMapError`` naming the file."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            self.ctx.metrics.shard_map_reloads.labels("invalid").inc()
            raise self._error(exc) from exc
        return self._take(raw)

    def refresh(self) -> bool:
        """Re-read the file; True when a changed, valid map was applied."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            log.warning("shard map %s unreadable, keeping the last one: %s", self.path, exc)
            return False
        if raw == self._seen:
            return False
        try:
            self._take(raw)
        except ShardMapError as exc:
            self._seen = raw  # one report per bad version, not one per poll
            log.error("%s; keeping the last good map", exc)
            return False
        return True

    def _take(self, raw: bytes) -> ShardMap:
        """Parse ``raw`` (the file's bytes, read once) and apply it."""
        try:
            shard_map = parse_shard_map(raw.decode(), self.ctx.region)
        except (UnicodeDecodeError, ShardMapError) as exc:
            self.ctx.metrics.shard_map_reloads.labels("invalid").inc()
            raise self._error(exc) from exc
        self._seen = raw
        self._apply(shard_map)
        return shard_map

    def _error(self, exc: Exception) -> ShardMapError:
        return ShardMapError(
            f"shard map {self.path}: {exc}; the operator publishes it in the ConfigMap "
            "<region>-shardmap (TIDINGS_SHARD_MAP_FILE)"
        )

    def _apply(self, shard_map: ShardMap) -> None:
        before = self.ctx.shard_map
        self.ctx.shard_map = shard_map
        self.ctx.metrics.shard_map_reloads.labels("loaded").inc()
        self.ctx.metrics.shard_map_epoch.set(sum(s.epoch for s in shard_map.shards))
        moved = [
            s.name
            for s in shard_map.shards
            if s.epoch and s.owner_region != _owner_of(before, s.first_slot)
        ]
        log.info(
            "shard map %s: %d shards, %d owned here%s",
            self.path,
            len(shard_map.shards),
            sum(s.owner_region == self.ctx.region for s in shard_map.shards),
            f"; owner changed for {', '.join(moved[:10])}" if moved else "",
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not await wait_event(stop, POLL_S):
            self.refresh()


def _owner_of(shard_map: ShardMap, slot: int) -> str:
    return next(s.owner_region for s in shard_map.shards if s.covers(slot))
