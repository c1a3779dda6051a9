"""The inventory behind periodic resyncs: which shards and pools each region's timer
looks at again, and which shard events change the shard maps."""

from __future__ import annotations

from typing import Any

from tidings_operator.names import CHAT_REGION, MESSAGE_SHARD, PUSH_POOL
from tidings_operator.resync import Inventory
from tidings_operator.workqueue import Key


def shard(name: str, owner: str, epoch: int = 1, lag: int = 0) -> tuple[Key, dict[str, Any]]:
    spec = {"region": "eu", "firstSlot": 0, "lastSlot": 9, "owner": owner, "epoch": epoch}
    return Key(MESSAGE_SHARD, "ns", name), {"spec": spec, "status": {"consumerLag": lag}}


def pool(name: str, region: str) -> tuple[Key, dict[str, Any]]:
    return Key(PUSH_POOL, "ns", name), {"spec": {"region": region, "provider": "fcm"}}


def inventory() -> Inventory:
    return Inventory({MESSAGE_SHARD: 60.0, PUSH_POOL: 30.0})


def test_a_region_resyncs_the_shards_it_owns_and_the_pools_it_runs() -> None:
    seen = inventory()
    for key, body in (shard("eu-0", "eu"), shard("us-0", "us"), pool("fcm", "eu")):
        seen.seen(key, body)
    seen.seen(*shard("eu-1", "us"))  # taken over by us
    assert seen.due("ns", "eu", now=0.0) == [
        Key(MESSAGE_SHARD, "ns", "eu-0"),
        Key(PUSH_POOL, "ns", "fcm"),
    ]
    assert seen.due("ns", "us", now=0.0) == [
        Key(MESSAGE_SHARD, "ns", "eu-1"),
        Key(MESSAGE_SHARD, "ns", "us-0"),
    ]
    assert seen.due("other", "eu", now=0.0) == []


def test_each_kind_is_due_once_per_its_interval() -> None:
    seen = inventory()
    seen.seen(*shard("eu-0", "eu"))
    seen.seen(*pool("fcm", "eu"))
    assert len(seen.due("ns", "eu", now=100.0)) == 2
    assert seen.due("ns", "eu", now=110.0) == []
    assert seen.due("ns", "eu", now=130.0) == [Key(PUSH_POOL, "ns", "fcm")]
    assert seen.due("ns", "eu", now=159.0) == []
    assert seen.due("ns", "eu", now=160.0) == [
        Key(MESSAGE_SHARD, "ns", "eu-0"),
        Key(PUSH_POOL, "ns", "fcm"),
    ]


def test_only_routing_changes_of_a_shard_touch_the_shard_maps() -> None:
    seen = inventory()
    assert seen.seen(*shard("eu-0", "eu"))  # new
    assert not seen.seen(*shard("eu-0", "eu", lag=40))  # a status write
    assert seen.seen(*shard("eu-0", "us", epoch=2))  # a move
    assert not seen.seen(Key(CHAT_REGION, "ns", "eu"), {"spec": {}})


def test_gone_objects_leave_the_inventory() -> None:
    seen = inventory()
    seen.seen(Key(CHAT_REGION, "ns", "eu"), {"spec": {}})
    seen.seen(Key(CHAT_REGION, "ns", "us"), {"spec": {}})
    key, body = shard("eu-0", "eu")
    seen.seen(key, body)
    assert seen.regions("ns") == ["eu", "us"]
    seen.gone(key)
    seen.gone(Key(CHAT_REGION, "ns", "us"))
    assert seen.regions("ns") == ["eu"]
    assert seen.due("ns", "eu", now=0.0) == []
    assert seen.seen(key, body)  # back again: new to the maps
