"""A MessageShard whose owner is no known region is marked Invalid and its slots stay
with the last owner that acknowledged them; a valid one is Ready (the READY column)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from fake_kube import FakeClock, FakeExternal, FakeKube, region_body
from tidings_operator.kube import Kube
from tidings_operator.models import MessageShard
from tidings_operator.reconciler import Reconciler
from tidings_operator.shard_status import routed_shard, shard_status
from tidings_operator.workqueue import Key

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def shard_body(spec_owner: str = "us-east", spec_epoch: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "MessageShard",
        "metadata": {"name": "us-east-0", "namespace": "ns", "generation": spec_epoch},
        "spec": {
            "region": "us-east",
            "index": 0,
            "firstSlot": 0,
            "lastSlot": 127,
            "owner": spec_owner,
            "epoch": spec_epoch,
        },
        **({"status": status} if status else {}),
    }


def shard(spec_owner: str = "us-east", spec_epoch: int = 1, **status: Any) -> MessageShard:
    return MessageShard.model_validate(shard_body(spec_owner, spec_epoch, **status))


REGIONS = {"us-east", "eu-west"}


def test_a_shard_with_a_known_owner_is_served_and_ready() -> None:
    status = shard_status(shard("eu-west", 2), REGIONS, owner_deleting=False, lag=5, now=NOW)
    assert (status["phase"], status["owner"], status["epoch"]) == ("Serving", "eu-west", 2)
    assert status["consumerLag"] == 5
    (ready,) = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Serving")
    assert ready["message"] == "slots 0-127 served by eu-west at epoch 2"


def test_an_unknown_owner_is_invalid_and_the_slots_stay_with_the_last_owner() -> None:
    moved = shard("nowhere", 3, owner="eu-west", epoch=2, phase="Serving")
    status = shard_status(moved, REGIONS, owner_deleting=False, lag=None, now=NOW)
    assert (status["phase"], status["owner"], status["epoch"]) == ("Invalid", "eu-west", 2)
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "UnknownOwner")
    assert "spec.owner nowhere is not a ChatRegion" in ready["message"]
    assert "slots 0-127 stay with eu-west at epoch 2" in ready["message"]
    routed = routed_shard(moved, REGIONS)
    assert (routed.owner_region, routed.epoch) == ("eu-west", 2)


def test_without_an_acknowledged_owner_the_slots_go_home() -> None:
    routed = routed_shard(shard("nowhere", 2), REGIONS)
    assert (routed.owner_region, routed.epoch) == ("us-east", 2)
    assert routed_shard(shard("eu-west", 2), REGIONS).owner_region == "eu-west"


def region(name: str) -> dict[str, Any]:
    return region_body(name, shards=1)


async def test_the_home_region_reports_a_shard_given_to_nowhere() -> None:
    kube = FakeKube(region("us-east"))
    reconciler = Reconciler(cast(Kube, kube), FakeExternal(), clock=FakeClock(NOW))
    key = Key("ChatRegion", "ns", "us-east")
    await reconciler(key)  # creates its shard
    await reconciler(Key("MessageShard", "ns", "us-east-0"))
    assert kube.status("MessageShard", "us-east-0")["phase"] == "Serving"
    body = kube.objects[("MessageShard", "ns", "us-east-0")]
    body["spec"] = {**body["spec"], "owner": "nowhere", "epoch": 2}
    await reconciler(Key("MessageShard", "ns", "us-east-0"))
    status = kube.status("MessageShard", "us-east-0")
    assert (status["phase"], status["owner"], status["epoch"]) == ("Invalid", "us-east", 1)
    assert ("us-east-0", "UnknownOwner") in [(n, r) for n, r, _ in kube.events]
    await reconciler(key)
    shard_map = kube.objects[("ConfigMap", "ns", "us-east-shardmap")]["data"]
    assert "nowhere" not in str(shard_map)
    ready = next(
        c for c in kube.status("ChatRegion", "us-east")["conditions"] if c["type"] == "Ready"
    )
    assert (ready["status"], ready["reason"]) == ("False", "ShardOwnerUnknown")
