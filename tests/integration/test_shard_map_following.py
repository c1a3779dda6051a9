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
from pathlib import Path

import httpx
import pytest

import procs
from harness import body_text, ciphertexts, online, register
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


async def test_a_failed_regions_backlog_is_forwarded_to_the_new_owner_after_failover(
    tmp_path: Path, distributed_env: dict[str, str]
) -> None:
    a, b = unique_region(), unique_region()
    maps = {a: tmp_path / f"{a}.json", b: tmp_path / f"{b}.json"}
    data, log = tmp_path / "data", tmp_path / "tidings.log"

    def env(region: str) -> dict[str, str]:
        return {
            **distributed_env,
            "TIDINGS_REGION": region,
            "TIDINGS_SHARD_MAP_FILE": str(maps[region]),
        }

    def publish_both(shards: list[Shard]) -> None:
        for path in maps.values():
            publish(path, shards)

    # Until bob is registered, each region's map is the region alone.
    publish(maps[a], [Shard(f"{a}-0", 0, SLOTS - 1, a, a)])
    publish(maps[b], [Shard(f"{b}-0", 0, SLOTS - 1, b, b)])
    async with (
        procs.running(["serve", "gateway"], data, log, env(a)) as gw_a,
        procs.running(["serve", "delivery"], data, log, env(a)) as delivery_a,
        procs.running(["serve", "gateway"], data, log, env(b)),  # b's topics exist
    ):
        gateway = gw_a.gateway(data)
        alice, bob = await register(gateway), await register(gateway)
        bob_slot = slot_for(bob.user_id)
        if slot_for(alice.user_id) == bob_slot:
            pytest.skip("alice and bob share a hash slot (1 in 1,024)")

        # bob's shard is b's: a's router sends to b, whose delivery worker is down.
        publish_both(moving(bob_slot, a, b, b, 1))
        await until_metric(gw_a.ops_url, "tidings_shard_map_reloads_total", 2, result="loaded")
        bob_ws = await online(bob)
        alice_ws = await alice.connect()

        async def to_bob(client_id: str, text: str) -> str:
            body = {"id": client_id, "to": {"user": bob.user_id}}
            body["ciphertexts"] = ciphertexts({bob.user_id: [1]}, text)
            reply = await alice_ws.request("send", body)
            assert reply["status"] == 200, reply
            return str(reply["body"]["server_id"])

        stranded_id = await to_bob("m1", "stranded")
        assert (
            await metric(
                gw_a.ops_url, "tidings_envelopes_produced_total", topic=f"tidings.{b}.deliveries"
            )
            == 1
        )
        await bob_ws.nothing_for("deliver", 2.0)

        # Failover: the shard moves to a at epoch 2, in both regions' maps.
        publish_both(moving(bob_slot, a, b, a, 2))
        await until_metric(gw_a.ops_url, "tidings_shard_map_reloads_total", 3, result="loaded")

        # New sends go straight to a.
        await to_bob("m2", "direct")
        (direct,) = await bob_ws.deliveries(1)
        assert body_text(direct) == "direct"

        # b comes back: its delivery worker forwards the stranded record to a (a fenced,
        # stale owner never writes to the moved users' inboxes itself).
        async with procs.running(["serve", "delivery"], data, log, env(b)) as delivery_b:
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
    a, b = unique_region(), unique_region()
    maps = {a: tmp_path / f"{a}.json", b: tmp_path / f"{b}.json"}
    data, log = tmp_path / "data", tmp_path / "tidings.log"

    def env(region: str) -> dict[str, str]:
        return {
            **distributed_env,
            "TIDINGS_REGION": region,
            "TIDINGS_SHARD_MAP_FILE": str(maps[region]),
            "TIDINGS_SHARD_LEASE_S": "3",
            "TIDINGS_SHARD_LEASE_SKEW_S": "0.5",
        }

    publish(maps[a], [Shard(f"{a}-0", 0, SLOTS - 1, a, a)])
    publish(maps[b], [Shard(f"{b}-0", 0, SLOTS - 1, b, b)])
    async with (
        procs.running(["serve", "gateway"], data, log, env(a)) as gw_a,
        procs.running(["serve", "delivery"], data, log, env(a)) as delivery_a,
        procs.running(["serve", "gateway"], data, log, env(b)),  # b's topics exist
    ):
        gateway = gw_a.gateway(data)
        alice, bob = await register(gateway), await register(gateway)
        bob_slot = slot_for(bob.user_id)
        if slot_for(alice.user_id) == bob_slot:
            pytest.skip("alice and bob share a hash slot (1 in 1,024)")
        owned_by_a = moving(bob_slot, a, a, a, 1)
        for path in maps.values():
            publish(path, owned_by_a)
        await until_metric(
            delivery_a.ops_url, "tidings_shard_map_reloads_total", 2, result="loaded"
        )
        # a holds the leases of its three shards (bob's among them).
        await until_metric(delivery_a.ops_url, "tidings_shard_leases_held", 3)
        bob_ws = await online(bob)
        alice_ws = await alice.connect()

        async def to_bob(client_id: str, text: str) -> str:
            body = {"id": client_id, "to": {"user": bob.user_id}}
            body["ciphertexts"] = ciphertexts({bob.user_id: [1]}, text)
            reply = await alice_ws.request("send", body)
            assert reply["status"] == 200, reply
            return str(reply["body"]["server_id"])

        first = await to_bob("m1", "before")
        (delivered,) = await bob_ws.deliveries(1)
        assert delivered["server_id"] == first

        # a's worker is cut off; b's map (only) moves bob's shard to b at epoch 2.
        delivery_a.process.send_signal(signal.SIGSTOP)
        try:
            publish(maps[b], moving(bob_slot, a, a, b, 2))
            async with procs.running(["serve", "delivery"], data, log, env(b)) as delivery_b:
                # b takes the lease once a's has run out (3 s + 0.5 s of skew).
                await until_metric(
                    delivery_b.ops_url,
                    "tidings_shard_lease_writes_total",
                    1,
                    kind="take",
                    result="applied",
                )
                # a's gateway still routes bob's messages to a's own topic.
                second = await to_bob("m2", "after")
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
                renewals = await metric(
                    delivery_a.ops_url,
                    "tidings_shard_lease_writes_total",
                    kind="renew",
                    result="refused",
                )
                assert renewals >= 1
                await bob_ws.nothing_for("deliver", 1.0)  # no duplicate of either
        finally:
            delivery_a.process.send_signal(signal.SIGCONT)
        await alice_ws.close()
        await bob_ws.close()
