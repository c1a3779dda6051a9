"""The platform follows the operator's shard map file: sends go to the owner region, and
what a moved shard left on the old owner's topic is forwarded, not lost.

Two regions share the real Kafka, Cassandra and Redis (as two regions share a
multi-datacenter keyspace). Every process runs ``tidings serve`` with
``TIDINGS_SHARD_MAP_FILE`` pointing at its region's copy of the map, written the way the
kubelet updates a mounted ConfigMap (a new file swapped in whole).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import procs
from harness import Device, Socket, body_text, ciphertexts, online, register
from servers import unique_region
from shard_map_support import moving, publish
from tidings.core.shardmap import SLOTS, Shard, slot_for

pytestmark = pytest.mark.slow


async def metric(url: str, name: str, **labels: str) -> float:
    """One sample of a counter from the real /metrics endpoint at ``url``, a process's
    operations URL (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        text = (await http.get("/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


async def until_metric(url: str, name: str, at_least: float, **labels: str) -> float:
    for _ in range(100):
        value = await metric(url, name, **labels)
        if value >= at_least:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name}{labels} stayed below {at_least} at {url}")


@dataclass
class Regions:
    """Regions a and b on the shared servers, each following its own map file."""

    a: str
    b: str
    maps: dict[str, Path]
    data: Path
    log: Path
    settings: dict[str, str]
    """What every process of either region is given beside its region and map."""

    def env(self, region: str) -> dict[str, str]:
        return {
            **self.settings,
            "TIDINGS_REGION": region,
            "TIDINGS_SHARD_MAP_FILE": str(self.maps[region]),
        }

    def publish_both(self, shards: list[Shard]) -> None:
        for path in self.maps.values():
            publish(path, shards)

    def delivery(self, region: str) -> AbstractAsyncContextManager[procs.Proc]:
        return procs.running(["serve", "delivery"], self.data, self.log, self.env(region))


@dataclass
class TwoRegions:
    """a's gateway and delivery worker and b's gateway running; alice and bob registered
    at a, in different hash slots."""

    regions: Regions
    gw_a: procs.Proc
    delivery_a: procs.Proc
    alice: Device
    bob: Device

    @property
    def bob_slot(self) -> int:
        return slot_for(self.bob.user_id)


@asynccontextmanager
async def two_regions(
    tmp_path: Path, distributed_env: dict[str, str], **settings: str
) -> AsyncIterator[TwoRegions]:
    """Each region's map is the region alone until the test publishes another."""
    a, b = unique_region(), unique_region()
    regions = Regions(
        a,
        b,
        {a: tmp_path / f"{a}.json", b: tmp_path / f"{b}.json"},
        tmp_path / "data",
        tmp_path / "tidings.log",
        {**distributed_env, **settings},
    )
    publish(regions.maps[a], [Shard(f"{a}-0", 0, SLOTS - 1, a, a)])
    publish(regions.maps[b], [Shard(f"{b}-0", 0, SLOTS - 1, b, b)])
    data, log = regions.data, regions.log
    async with (
        procs.running(["serve", "gateway"], data, log, regions.env(a)) as gw_a,
        regions.delivery(a) as delivery_a,
        procs.running(["serve", "gateway"], data, log, regions.env(b)),  # b's topics exist
    ):
        gateway = gw_a.gateway(data)
        alice, bob = await register(gateway), await register(gateway)
        if slot_for(alice.user_id) == slot_for(bob.user_id):
            pytest.skip("alice and bob share a hash slot (1 in 1,024)")
        yield TwoRegions(regions, gw_a, delivery_a, alice, bob)


async def send(sender: Socket, to: Device, client_id: str, text: str) -> str:
    """A message from ``sender``'s socket to ``to``'s device 1; its server id."""
    body = {"id": client_id, "to": {"user": to.user_id}}
    body["ciphertexts"] = ciphertexts({to.user_id: [1]}, text)
    reply = await sender.request("send", body)
    assert reply["status"] == 200, reply
    return str(reply["body"]["server_id"])


async def test_a_failed_regions_backlog_is_forwarded_to_the_new_owner_after_failover(
    tmp_path: Path, distributed_env: dict[str, str]
) -> None:
    async with two_regions(tmp_path, distributed_env) as two:
        regions, bob = two.regions, two.bob
        a, b, gw_a, delivery_a = regions.a, regions.b, two.gw_a, two.delivery_a

        # bob's shard is b's: a's router sends to b, whose delivery worker is down.
        regions.publish_both(moving(two.bob_slot, a, b, b, 1))
        await until_metric(gw_a.ops_url, "tidings_shard_map_reloads_total", 2, result="loaded")
        bob_ws = await online(bob)
        alice_ws = await two.alice.connect()

        stranded_id = await send(alice_ws, bob, "m1", "stranded")
        assert (
            await metric(
                gw_a.ops_url, "tidings_envelopes_produced_total", topic=f"tidings.{b}.deliveries"
            )
            == 1
        )
        await bob_ws.nothing_for("deliver", 2.0)

        # Failover: the shard moves to a at epoch 2, in both regions' maps.
        regions.publish_both(moving(two.bob_slot, a, b, a, 2))
        await until_metric(gw_a.ops_url, "tidings_shard_map_reloads_total", 3, result="loaded")

        # New sends go straight to a.
        await send(alice_ws, bob, "m2", "direct")
        (direct,) = await bob_ws.deliveries(1)
        assert body_text(direct) == "direct"

        # b comes back: its delivery worker forwards the stranded record to a (a fenced,
        # stale owner never writes to the moved users' inboxes itself).
        async with regions.delivery(b) as delivery_b:
            (stranded,) = await bob_ws.deliveries(1, timeout=30.0)
            assert body_text(stranded) == "stranded"
            assert stranded["server_id"] == stranded_id
            assert (
                await metric(delivery_b.ops_url, "tidings_envelopes_forwarded_total", region=a) == 1
            )
            assert await metric(delivery_b.ops_url, "tidings_inbox_writes_total") == 0
        # a stored both messages to bob and both delivered receipts to alice.
        assert await until_metric(delivery_a.ops_url, "tidings_inbox_writes_total", 4) == 4
        await bob_ws.nothing_for("deliver", 1.0)
        await alice_ws.close()
        await bob_ws.close()


async def test_a_stale_owner_that_lost_its_lease_forwards_instead_of_storing(
    tmp_path: Path, distributed_env: dict[str, str]
) -> None:
    """a owns bob's shard; its delivery worker is cut off (stopped) past its lease while
    b's map, and b's alone, moves the shard to b, which takes the lease. a's gateway and
    worker never read the new map: a send through a still goes to a's topic, and a's
    worker, resumed, holds no lease and the store says b does, so it forwards to b."""
    leases = {"TIDINGS_SHARD_LEASE_S": "3", "TIDINGS_SHARD_LEASE_SKEW_S": "0.5"}
    async with two_regions(tmp_path, distributed_env, **leases) as two:
        regions, bob, delivery_a = two.regions, two.bob, two.delivery_a
        a, b = regions.a, regions.b
        regions.publish_both(moving(two.bob_slot, a, a, a, 1))
        await until_metric(
            delivery_a.ops_url, "tidings_shard_map_reloads_total", 2, result="loaded"
        )
        # a holds the leases of its three shards (bob's among them).
        await until_metric(delivery_a.ops_url, "tidings_shard_leases_held", 3)
        bob_ws = await online(bob)
        alice_ws = await two.alice.connect()

        first = await send(alice_ws, bob, "m1", "before")
        (delivered,) = await bob_ws.deliveries(1)
        assert delivered["server_id"] == first

        # a's worker is cut off; b's map (only) moves bob's shard to b at epoch 2.
        delivery_a.process.send_signal(signal.SIGSTOP)
        try:
            publish(regions.maps[b], moving(two.bob_slot, a, a, b, 2))
            async with regions.delivery(b) as delivery_b:
                # b takes the lease once a's has run out (3 s + 0.5 s of skew).
                await until_metric(
                    delivery_b.ops_url,
                    "tidings_shard_lease_writes_total",
                    1,
                    kind="take",
                    result="applied",
                )
                # a's gateway still routes bob's messages to a's own topic.
                second = await send(alice_ws, bob, "m2", "after")
                delivery_a.process.send_signal(signal.SIGCONT)
                (moved,) = await bob_ws.deliveries(1, timeout=30.0)
                assert body_text(moved) == "after"
                assert moved["server_id"] == second
                assert (
                    await until_metric(
                        delivery_a.ops_url, "tidings_envelopes_forwarded_total", 1, region=b
                    )
                    == 1
                )
                # a stored bob's first message and alice's delivered receipt for it,
                # nothing of the second: b stored it.
                assert await metric(delivery_a.ops_url, "tidings_inbox_writes_total") == 2
                assert await until_metric(delivery_b.ops_url, "tidings_inbox_writes_total", 1) >= 1
                refused = await metric(
                    delivery_a.ops_url,
                    "tidings_shard_lease_writes_total",
                    kind="renew",
                    result="refused",
                )
                assert refused >= 1
                await bob_ws.nothing_for("deliver", 1.0)  # no duplicate of either
        finally:
            delivery_a.process.send_signal(signal.SIGCONT)
        await alice_ws.close()
        await bob_ws.close()
