"""Sends for a user whose shard a peer region owns go to that peer's own Kafka cluster
(``TIDINGS_KAFKA_PEERS``): accepted only once its brokers acknowledged them, and refused
with 503 (never accepted-then-lost) while that cluster cannot be reached, while sends to
this region's users go on.

The peer's "own" cluster is the test's Kafka under another address (``localhost``), so
its bus is a client of its own; the unreachable one is a closed port.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from harness import body_text, ciphertexts, online, register, run_gateway
from servers import as_settings, unique_region
from shard_map_support import closed_port, moving, publish
from tidings.core.shardmap import SLOTS, Shard, deliveries_topic, slot_for
from tidings.engines.kafka import KafkaBus
from tidings.engines.regional_bus import PEER_TIMEOUT_S, RegionalBus
from tidings.errors import Unavailable

pytestmark = pytest.mark.slow


async def test_a_peers_topic_goes_to_the_peers_cluster_and_a_lost_peer_is_refused(
    kafka_bootstrap: str,
) -> None:
    here, peer, lost = unique_region(), unique_region(), unique_region()
    port = kafka_bootstrap.rsplit(":", 1)[1]
    bus = RegionalBus(
        KafkaBus(kafka_bootstrap),
        {
            peer: KafkaBus(f"localhost:{port}", timeout=PEER_TIMEOUT_S),
            lost: KafkaBus(f"127.0.0.1:{closed_port()}", timeout=PEER_TIMEOUT_S),
        },
    )
    await bus.start()
    try:
        await bus.ensure_topic(deliveries_topic(here), 1)
        await bus.ensure_topic(deliveries_topic(peer), 1)
        await bus.produce(deliveries_topic(here), [("u1", b"mine")])
        await bus.produce(deliveries_topic(peer), [("u2", b"theirs")])
        assert bus.bus_for(deliveries_topic(peer)).bootstrap == f"localhost:{port}"
        consumer = bus.here.consumer(deliveries_topic(peer), f"g-{uuid.uuid4().hex}")
        records = await consumer.poll(10, 10.0)
        assert [r.value for r in records] == [b"theirs"]  # it is on the shared cluster
        await consumer.close()

        with pytest.raises(Unavailable, match=f"region {lost} cannot be reached"):
            await bus.produce(deliveries_topic(lost), [("u3", b"lost")])
        await bus.ping()  # a peer being down is not this region unready
    finally:
        await bus.close()


async def test_a_send_for_a_lost_peers_user_is_refused_and_the_others_go_on(
    tmp_path: Path, distributed_env: dict[str, str]
) -> None:
    here, lost = unique_region(), unique_region()
    map_file = tmp_path / "shardmap.json"
    publish(map_file, [Shard(f"{here}-0", 0, SLOTS - 1, here, here)])
    settings = {
        **as_settings(distributed_env),
        "region": here,
        "shard_map_file": map_file,
        "kafka_peers": f"{lost}=127.0.0.1:{closed_port()}",
    }
    async with run_gateway(tmp_path / "data", **settings) as gw:
        alice, bob, carol = await register(gw), await register(gw), await register(gw)
        # Bob's shard moves to the lost region (a one-slot shard it owns).
        publish(map_file, moving(slot_for(bob.user_id), here, here, lost, 2))
        async with bob.http() as http:
            for _ in range(100):  # the gateway re-reads the file every 2 s
                if (await http.get("/v1/regions/mine")).json()["owner_region"] == lost:
                    break
                await asyncio.sleep(0.1)

        carol_ws = await online(carol)
        async with alice.http() as http:

            async def send(to: str, text: str) -> tuple[int, dict[str, object]]:
                r = await http.post(
                    "/v1/messages",
                    json={
                        "id": str(uuid.uuid4()),
                        "to": {"user": to},
                        "ciphertexts": ciphertexts({to: [1]}, text),
                    },
                )
                return r.status_code, r.json()

            status, body = await send(bob.user_id, "to bob")
            assert status == 503, body
            assert f"region {lost} cannot be reached" in str(body), body
            status, body = await send(carol.user_id, "to carol")
            assert status == 200, body
        assert body_text((await carol_ws.frame("deliver"))["body"]) == "to carol"

        # On one socket, written back to back (one batch of sends for the router): only
        # the send routed to the lost region is refused.
        alice_ws = await online(alice)
        ids = {to: f"s{uuid.uuid4().hex[:12]}" for to in (bob.user_id, carol.user_id)}
        for to, rid in ids.items():
            body = {
                "id": str(uuid.uuid4()),
                "to": {"user": to},
                "ciphertexts": ciphertexts({to: [1]}, "again"),
            }
            await alice_ws.send_text(json.dumps({"id": rid, "type": "send", "body": body}))
        to_bob = await alice_ws.response_to(ids[bob.user_id])
        to_carol = await alice_ws.response_to(ids[carol.user_id])
        assert (to_bob["status"], to_carol["status"]) == (503, 200), (to_bob, to_carol)
        assert body_text((await carol_ws.frame("deliver"))["body"]) == "again"
        await alice_ws.close()
        await carol_ws.close()
