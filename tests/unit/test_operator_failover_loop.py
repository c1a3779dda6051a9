"""The failover loop on its own timer, three regions each run by its own loop (as each
region's operator runs it), their API objects in memory and time on a fake clock: an
operator that stops moves nothing, a data plane a majority sees down for the window is
taken over, two regions never act on their own; and the reconcile around it (invalid
specs are permanent, and such a region can still be deleted)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from fake_kube import FakeClock, FakeExternal, FakeKube, region_body
from tidings_operator.failover_loop import FailoverLoop
from tidings_operator.failure import InvalidSpec
from tidings_operator.kube import Kube
from tidings_operator.outcome import Outcome
from tidings_operator.reconciler import Reconciler
from tidings_operator.workqueue import Key, WorkQueue

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
WINDOW = 30
TICK = 5
"""Seconds between ticks (the heartbeat interval); Leases hold for three."""


def region(name: str, peers: list[str], policy: str = "Automatic") -> dict[str, Any]:
    body = region_body(name, shards=2)
    body["spec"]["peers"] = [
        {"name": p, "gatewayEndpoint": f"http://{p}.gw", "kafkaBootstrapServers": f"{p}:9092"}
        for p in peers
    ]
    body["spec"]["failover"] = {"policy": policy, "detectionWindowSeconds": WINDOW}
    return body


def shard(home: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "MessageShard",
        "metadata": {"name": f"{home}-{index}", "namespace": "ns"},
        "spec": {
            "region": home,
            "index": index,
            "firstSlot": index * 10,
            "lastSlot": index * 10 + 9,
            "owner": home,
            "epoch": 1,
        },
    }


class World:
    """Regions whose data planes are up or down, each with its operator's loop."""

    def __init__(self, names: list[str], policy: str = "Automatic") -> None:
        objects = [region(n, [p for p in names if p != n], policy) for n in names]
        objects += [shard(n, i) for n in names for i in range(2)]
        self.kube = FakeKube(*objects)
        self.clock = FakeClock(T0)
        self.down: set[str] = set()
        """Regions whose gateways and Kafka do not answer."""
        self.loops = {
            n: FailoverLoop(
                cast(Kube, self.kube),
                self.clock,
                heartbeat_seconds=3 * TICK,
                gateway_probe=self.probe,
                kafka_probe=self.probe,
            )
            for n in names
        }
        self.running = set(names)
        """Regions whose operator runs (ticks its loop)."""

    async def probe(self, address: str) -> str | None:
        target = address.removeprefix("http://").split(".")[0].split(":")[0]
        return f"{address}: connection refused" if target in self.down else None

    async def run(self, seconds: int) -> None:
        for _ in range(seconds // TICK):
            self.clock.advance(TICK)
            for name in sorted(self.running):
                await self.loops[name].tick(Key("ChatRegion", "ns", name))

    def owners(self, home: str) -> list[tuple[str, int]]:
        return [
            (s["spec"]["owner"], s["spec"]["epoch"])
            for (kind, _, _), s in sorted(self.kube.objects.items())
            if kind == "MessageShard" and s["spec"]["region"] == home
        ]

    def peer(self, name: str, peer: str) -> dict[str, Any]:
        peers = self.kube.status("ChatRegion", name)["failover"]["peers"]
        found: dict[str, Any] = next(p for p in peers if p["name"] == peer)
        return found

    def decision(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.kube.status("ChatRegion", name)["failover"]["decision"]
        return found

    def with_dns(self) -> None:
        """Every region serves at ``http://<name>.gw`` and keeps one global name."""
        for (kind, _, name), body in self.kube.objects.items():
            if kind == "ChatRegion":
                body["spec"]["publicUrl"] = f"http://{name}.gw"
                body["spec"]["dns"] = {"hostname": "chat.tidings.example", "ttlSeconds": 30}

    def dns(self, name: str) -> dict[str, list[str]]:
        """Region -> targets of the global name, as ``name``'s DNSEndpoint says."""
        found = self.kube.objects[("DNSEndpoint", "ns", f"{name}-gateway-dns")]
        return {e["setIdentifier"]: e["targets"] for e in found["spec"]["endpoints"]}

    def reasons(self, name: str) -> list[str]:
        return [reason for involved, reason, _ in self.kube.events if involved == name]


async def test_an_operator_down_for_three_windows_moves_nothing_and_status_says_why() -> None:
    world = World(["us", "eu", "ap"])
    await world.run(2 * TICK)
    assert world.peer("us", "eu")["health"] == "Healthy"
    world.running.discard("eu")  # its operator dies; its gateways and Kafka serve on
    await world.run(3 * WINDOW)
    assert world.owners("eu") == [("eu", 1), ("eu", 1)]
    for judge in ("us", "ap"):
        seen = world.peer(judge, "eu")
        assert (seen["health"], seen["reason"]) == ("OperatorDown", "OperatorDown")
        assert "data plane reachable from ap, us" in seen["message"]
        assert world.decision(judge)["reason"] == "OperatorDown"
    assert "ShardTakenOver" not in world.reasons("us") + world.reasons("ap")
    assert "PeerOperatorDown" in world.reasons("us")


async def test_a_region_a_majority_sees_down_for_the_window_is_taken_over_once() -> None:
    world = World(["us", "eu", "ap"])
    await world.run(2 * TICK)
    world.running.discard("eu")
    world.down.add("eu")  # the whole region is lost
    await world.run(WINDOW - TICK)
    assert world.owners("eu") == [("eu", 1), ("eu", 1)]  # not for the whole window yet
    assert world.peer("us", "eu")["health"] == "Suspect"
    await world.run(3 * TICK)
    assert sorted(world.owners("eu")) == [("ap", 2), ("us", 2)]  # one each, fenced
    seen = world.peer("us", "eu")
    assert (seen["health"], seen["votes"], seen["votesNeeded"]) == ("Failed", 2, 2)
    assert world.decision("us")["action"] == "TakeOver"
    assert "ShardTakenOver" in world.reasons("us")
    await world.run(WINDOW)
    assert sorted(world.owners("eu")) == [("ap", 2), ("us", 2)]  # no second move
    # It comes back: healthy again, and nothing fails back by itself.
    world.down.discard("eu")
    world.running.add("eu")
    await world.run(2 * TICK)
    assert world.peer("us", "eu")["health"] == "Healthy"
    assert sorted(world.owners("eu")) == [("ap", 2), ("us", 2)]


async def test_one_region_alone_seeing_a_peer_down_moves_nothing() -> None:
    """A probe failure from one vantage point (a partition between two regions)."""
    world = World(["us", "eu", "ap"])
    real = world.probe

    async def partitioned(address: str) -> str | None:
        if address.startswith(("http://eu", "eu")) and world.loops["us"].gateway_probe:
            return "timeout"
        return await real(address)

    world.loops["us"].gateway_probe = partitioned
    world.loops["us"].kafka_probe = partitioned
    await world.run(3 * WINDOW)
    assert world.owners("eu") == [("eu", 1), ("eu", 1)]
    seen = world.peer("us", "eu")
    assert (seen["health"], seen["votes"]) == ("Suspect", 1)
    # ap reads us's sightings: it counts one vote of the two needed, as us does.
    assert (world.peer("ap", "eu")["health"], world.peer("ap", "eu")["votes"]) == ("Suspect", 1)


async def test_two_regions_never_fail_over_automatically_and_say_so() -> None:
    world = World(["us", "eu"])
    await world.run(TICK)
    world.running.discard("eu")
    world.down.add("eu")
    await world.run(3 * WINDOW)
    assert world.owners("eu") == [("eu", 1), ("eu", 1)]
    decision = world.decision("us")
    assert (decision["action"], decision["reason"]) == ("NoQuorum", "FailoverNoQuorum")
    assert "kubectl tidings failover" in decision["message"]
    assert world.peer("us", "eu")["health"] == "Suspect"
    assert world.reasons("us").count("FailoverNoQuorum") == 1  # one Event, not one per tick


async def test_a_restarted_loop_keeps_the_start_of_a_run_of_failed_checks() -> None:
    world = World(["us", "eu", "ap"])
    await world.run(TICK)
    world.down.add("eu")
    world.running.discard("eu")
    await world.run(WINDOW - TICK)
    for name in ("us", "ap"):  # both operators restart: nothing kept in memory
        world.loops[name] = FailoverLoop(
            cast(Kube, world.kube),
            world.clock,
            heartbeat_seconds=3 * TICK,
            gateway_probe=world.probe,
            kafka_probe=world.probe,
        )
    await world.run(2 * TICK)
    assert world.peer("us", "eu")["health"] == "Failed"


# ---------------------------------------------------------------- invalid specs


def invalid_region() -> dict[str, Any]:
    body = region_body("us-east", shards=1)
    body["spec"]["peers"] = [{"name": "us-east"}]  # the CRD lets it in; the model refuses
    return body


async def test_an_invalid_spec_is_a_permanent_error_with_a_condition_saying_what_to_fix() -> None:
    kube = FakeKube(invalid_region())
    reconciler = Reconciler(cast(Kube, kube), FakeExternal(), clock=FakeClock(T0))
    with pytest.raises(InvalidSpec):
        await reconciler(Key("ChatRegion", "ns", "us-east"))
    ready = next(
        c for c in kube.status("ChatRegion", "us-east")["conditions"] if c["type"] == "Ready"
    )
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "a region cannot be its own peer" in ready["message"]
    assert "kubectl edit chatregion us-east" in ready["message"]
    loop = FailoverLoop(cast(Kube, kube), FakeClock(T0))
    assert await loop.tick(Key("ChatRegion", "ns", "us-east")) is Outcome.INVALID


@pytest.mark.parametrize(("error", "retried"), [(InvalidSpec, 0), (RuntimeError, 1)])
async def test_the_work_queue_retries_only_what_can_succeed(
    error: type[Exception], retried: int
) -> None:
    calls: list[Key] = []
    kube = FakeKube(invalid_region())
    reconciler = Reconciler(cast(Kube, kube), FakeExternal(), clock=FakeClock(T0))

    ran = asyncio.Event()

    async def handler(key: Key) -> None:
        calls.append(key)
        try:
            if error is InvalidSpec:
                await reconciler(key)  # the real one: the model refuses the spec
            raise error("boom")
        finally:
            ran.set()  # the queue decides on a retry before it next yields

    queue = WorkQueue(handler, debounce=0, first_retry=3600)
    key = Key("ChatRegion", "ns", "us-east")
    queue.trigger(key)
    await asyncio.wait_for(ran.wait(), 5)
    await asyncio.sleep(0)
    assert queue.retrying == retried
    await queue.close()
    assert calls == [key]


async def test_a_region_with_an_invalid_spec_can_still_be_deleted() -> None:
    kube = FakeKube(invalid_region())
    reconciler = Reconciler(cast(Kube, kube), FakeExternal(), clock=FakeClock(T0))
    done = await reconciler.finalize_region(kube.objects[("ChatRegion", "ns", "us-east")])
    assert "data kept" in done[0]
    assert ("us-east", "ExternalRetained") in [(n, r) for n, r, _ in kube.events]


async def test_the_global_name_leaves_out_a_failed_region_until_it_is_healthy_again() -> None:
    world = World(["us", "eu", "ap"])
    world.with_dns()
    await world.run(2 * TICK)
    everyone = {"ap": ["ap.gw"], "eu": ["eu.gw"], "us": ["us.gw"]}
    assert world.dns("us") == world.dns("ap") == world.dns("eu") == everyone
    endpoint = world.kube.objects[("DNSEndpoint", "ns", "us-gateway-dns")]
    assert endpoint["spec"]["endpoints"][0] == {
        "dnsName": "chat.tidings.example",
        "recordType": "CNAME",
        "targets": ["ap.gw"],
        "recordTTL": 30,
        "setIdentifier": "ap",
        "labels": {"tidings.dev/region": "ap"},
    }
    world.running.discard("eu")
    world.down.add("eu")
    await world.run(WINDOW - TICK)
    assert world.dns("us") == everyone  # suspect is not failed: no flapping
    await world.run(3 * TICK)
    assert world.dns("us") == world.dns("ap") == {"ap": ["ap.gw"], "us": ["us.gw"]}
    world.down.discard("eu")
    world.running.add("eu")
    await world.run(2 * TICK)
    assert world.dns("us") == world.dns("ap") == everyone


async def test_without_the_dns_kind_the_region_is_told_once_and_failover_goes_on() -> None:
    world = World(["us", "eu", "ap"])
    world.with_dns()
    world.kube.missing_kinds.add("DNSEndpoint")
    await world.run(3 * TICK)
    assert world.reasons("us").count("DNSEndpointUnavailable") == 1
    assert world.peer("us", "eu")["health"] == "Healthy"
    world.kube.missing_kinds.clear()  # the CRD is installed: the next tick applies it
    await world.run(TICK)
    assert world.dns("us") == {"ap": ["ap.gw"], "eu": ["eu.gw"], "us": ["us.gw"]}


async def test_a_change_of_a_peers_health_asks_for_a_reconcile_that_publishes_it() -> None:
    world = World(["us", "eu", "ap"])
    asked: list[str] = []
    for loop in world.loops.values():
        loop.health_changed = lambda key: asked.append(key.name)
    await world.run(2 * TICK)
    assert sorted(set(asked)) == ["ap", "eu", "us"]  # Unknown -> Healthy, once each
    asked.clear()
    await world.run(2 * TICK)
    assert asked == []  # nothing changed: nothing asked
    world.running.discard("eu")
    world.down.add("eu")
    await world.run(WINDOW + 2 * TICK)
    assert sorted(set(asked)) == ["ap", "us"]  # Suspect, then Failed
