"""The shard map: which region is home to a user, and which epoch owns it.

The user space is cut into ``SLOTS`` hash slots; a shard is a contiguous slot range
with a home region, a current owner and a fencing epoch that grows on every move.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SLOTS = 1024


@functools.lru_cache(maxsize=1 << 16)
def slot_for(user_id: str) -> int:
    """The user's hash slot (cached: every copy of every message asks for one)."""
    digest = hashlib.sha256(user_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % SLOTS


def deliveries_topic(region: str) -> str:
    return f"tidings.{region}.deliveries"


def push_topic(region: str) -> str:
    return f"tidings.{region}.push"


def receipts_topic(region: str) -> str:
    """Receipts apart from messages: a receipt storm (every message yields delivered
    and read receipts per device) never queues messages behind it. Receipts name
    messages their recipient already has, so they need no order with messages."""
    return f"tidings.{region}.receipts"


def analytics_topic(region: str) -> str:
    return f"tidings.{region}.analytics"


def topic_region(topic: str) -> str | None:
    """The region whose topic this is (``tidings.<region>.<kind>``), None for others."""
    prefix, _, rest = topic.partition(".")
    region, _, kind = rest.partition(".")
    return region if prefix == "tidings" and region and kind else None


def region_topics(region: str) -> tuple[str, ...]:
    """Every topic of one region, as the platform creates them and the operator plans."""
    return (
        deliveries_topic(region),
        receipts_topic(region),
        push_topic(region),
        analytics_topic(region),
    )


def consumer_group(region: str, worker: str) -> str:
    """The consumer group of one worker type in one region (``delivery``, ``push``,
    ``analytics``): regions sharing a Kafka cluster never share a group."""
    return f"tidings.{region}.{worker}"


def push_consumer_group(region: str, providers: Iterable[str]) -> str:
    """One group per pool of providers (``tidings.<region>.push-fcm``): an FCM pool and
    an APNs pool each read every push job and send those whose token is theirs, instead
    of splitting the partitions and dropping each other's jobs."""
    return consumer_group(region, "push-" + "-".join(sorted(set(providers))))


@dataclass(frozen=True)
class Shard:
    name: str
    first_slot: int
    last_slot: int
    home_region: str
    owner_region: str
    epoch: int = 1

    def covers(self, slot: int) -> bool:
        return self.first_slot <= slot <= self.last_slot


class ShardMapError(ValueError):
    """The shard list leaves a gap, overlaps or strays outside the slot range."""


@dataclass(frozen=True)
class ShardMap:
    shards: tuple[Shard, ...]
    gateways: tuple[tuple[str, str], ...] = ()
    """(region, the base URL its clients reach its gateway at), as the operator publishes
    them: the map tells a client which region serves it, these tell it where that is."""
    health: tuple[tuple[str, str], ...] = ()
    """(region, its health as this region's operator last judged it: ``Healthy``,
    ``Suspect``, ``Failed``, ``OperatorDown`` or ``Unknown``), for peers."""

    def __post_init__(self) -> None:
        ordered = sorted(self.shards, key=lambda s: s.first_slot)
        expected = 0
        for shard in ordered:
            if shard.first_slot != expected or shard.last_slot < shard.first_slot:
                raise ShardMapError(
                    f"shard {shard.name} starts at slot {shard.first_slot}, expected {expected}"
                )
            expected = shard.last_slot + 1
        if expected != SLOTS:
            raise ShardMapError(f"shards cover slots up to {expected - 1}, not {SLOTS - 1}")
        object.__setattr__(self, "shards", tuple(ordered))

    def shard_for(self, user_id: str) -> Shard:
        slot = slot_for(user_id)
        lo, hi = 0, len(self.shards) - 1
        while lo <= hi:  # shards are sorted and contiguous
            mid = (lo + hi) // 2
            shard = self.shards[mid]
            if slot < shard.first_slot:
                hi = mid - 1
            elif slot > shard.last_slot:
                lo = mid + 1
            else:
                return shard
        raise ShardMapError(f"no shard covers slot {slot}")  # unreachable after validation

    def owner_region(self, user_id: str) -> str:
        return self.shard_for(user_id).owner_region

    def gateway_of(self, region: str) -> str | None:
        """The gateway URL published for ``region``, None when the map names none."""
        return next((url for name, url in self.gateways if name == region), None)

    def health_of(self, region: str) -> str | None:
        """``region``'s health as published, None when the map says nothing of it."""
        return next((health for name, health in self.health if name == region), None)


def single_region(region: str, shards: int = 1) -> ShardMap:
    """A map where ``region`` is home to and owns every slot, split in ``shards`` shards."""
    if not 1 <= shards <= SLOTS:
        raise ShardMapError(f"shard count must be within 1..{SLOTS}")
    bounds = [i * SLOTS // shards for i in range(shards + 1)]
    return ShardMap(
        tuple(
            Shard(f"{region}-{i}", bounds[i], bounds[i + 1] - 1, region, region)
            for i in range(shards)
        )
    )


SHARD_MAP_FILE_NAME = "shardmap.json"
"""The shard map's file: the operator's ConfigMap key, mounted into every pod."""


def shard_map_document(
    shards: Iterable[Shard],
    gateways: Mapping[str, str] | None = None,
    health: Mapping[str, str] | None = None,
) -> str:
    """Shards as the JSON the operator publishes and the platform reads, sorted by first
    slot. It may leave gaps (shards of peers the operator cannot see). ``gateways``:
    region -> the URL of its gateway; ``health``: region -> its health as judged by the
    publishing region; both written under ``regions`` when given."""
    ordered = sorted(shards, key=lambda s: s.first_slot)
    doc: dict[str, Any] = {
        "shards": [
            {
                "name": s.name,
                "firstSlot": s.first_slot,
                "lastSlot": s.last_slot,
                "homeRegion": s.home_region,
                "ownerRegion": s.owner_region,
                "epoch": s.epoch,
            }
            for s in ordered
        ]
    }
    gateways, health = gateways or {}, health or {}
    if gateways or health:
        doc["regions"] = {
            name: {
                **({"gateway": gateways[name]} if name in gateways else {}),
                **({"health": health[name]} if name in health else {}),
            }
            for name in sorted({*gateways, *health})
        }
    return json.dumps(doc, indent=2) + "\n"


def parse_shard_map(text: str, here: str) -> ShardMap:
    """The map in ``text`` (``shard_map_document``'s JSON); slots no shard covers are
    served by ``here`` at epoch 0, as a region alone serves every slot.

    Raises ``ShardMapError`` for malformed JSON, missing fields or overlapping shards. A
    region whose gateway is not an http(s) URL is left out of ``gateways`` (its clients
    keep the gateway they use): a bad URL must not stop every pod reading the map.
    """
    try:
        doc = json.loads(text)
        entries = doc["shards"]
        shards = [
            Shard(
                name=str(e["name"]),
                first_slot=_int(e["firstSlot"]),
                last_slot=_int(e["lastSlot"]),
                home_region=str(e["homeRegion"]),
                owner_region=str(e["ownerRegion"]),
                epoch=_int(e["epoch"]),
            )
            for e in entries
        ]
        regions = doc.get("regions") or {}
        if not isinstance(regions, dict):
            raise TypeError(f"regions is {type(regions).__name__}, not an object")
        gateways = tuple(
            sorted(
                (str(name), str(r["gateway"]).rstrip("/"))
                for name, r in regions.items()
                if isinstance(r, dict)
                and str(r.get("gateway", "")).startswith(("http://", "https://"))
            )
        )
        health = tuple(
            sorted(
                (str(name), str(r["health"]))
                for name, r in regions.items()
                if isinstance(r, dict) and isinstance(r.get("health"), str)
            )
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardMapError(f"not a shard map document ({type(exc).__name__}: {exc})") from exc
    return ShardMap(tuple(shards) + tuple(_gaps(shards, here)), gateways, health)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _gaps(shards: Iterable[Shard], here: str) -> list[Shard]:
    """Shards owned by ``here`` at epoch 0 over the slots ``shards`` leave uncovered."""
    gaps: list[Shard] = []
    expected = 0
    for shard in sorted(shards, key=lambda s: s.first_slot):
        if shard.first_slot > expected:
            gaps.append(
                Shard(f"{here}-unmapped-{expected}", expected, shard.first_slot - 1, here, here, 0)
            )
        expected = max(expected, shard.last_slot + 1)
    if expected < SLOTS:
        gaps.append(Shard(f"{here}-unmapped-{expected}", expected, SLOTS - 1, here, here, 0))
    return gaps


def partition_for(key: str, partitions: int) -> int:
    """Stable partition of a record key (same key, same partition, same order)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "big") % partitions
