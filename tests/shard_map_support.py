"""Shard maps as the operator publishes them, for tests of processes that follow one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import procs
from tidings.core.shardmap import SLOTS, Shard, shard_map_document


def publish(path: Path, shards: list[Shard], gateways: Mapping[str, str] | None = None) -> None:
    """Swap the whole file in at once, as the kubelet does for a ConfigMap volume."""
    staged = path.with_suffix(".next")
    staged.write_text(shard_map_document(shards, gateways))
    os.replace(staged, path)


def moving(slot: int, rest: str, mover: str, owner: str, epoch: int) -> list[Shard]:
    """``rest`` owns every slot but ``slot``, whose one-slot shard is home to ``mover``
    and owned by ``owner`` at ``epoch``."""
    shards = [Shard(f"{mover}-slot-{slot}", slot, slot, mover, owner, epoch)]
    if slot > 0:
        shards.append(Shard(f"{rest}-0", 0, slot - 1, rest, rest))
    if slot < SLOTS - 1:
        shards.append(Shard(f"{rest}-1", slot + 1, SLOTS - 1, rest, rest))
    return shards


def closed_port() -> int:
    """A loopback port nothing listens on (a region whose servers are gone)."""
    return procs.free_port()
