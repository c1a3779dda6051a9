"""``GET /v1/regions`` and ``GET /v1/regions/mine`` on a gateway that follows its
region's shard map file: after a failover moves the caller's shard, the caller is told
to go to the region serving it now, and where that region's gateway is."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import new_phone, online, register, run_gateway
from shard_map_support import closed_port, moving, publish
from tidings.client.http import Api
from tidings.client.sdk import Client
from tidings.core import wsproto
from tidings.core.shardmap import SLOTS, Shard, slot_for

US, EU = "https://us.example.com", "https://eu.example.com"
GATEWAYS = {"us-east": US, "eu-west": EU}


async def test_a_client_is_told_which_region_serves_it_and_where(tmp_path: Path) -> None:
    map_file = tmp_path / "shardmap.json"
    publish(map_file, [Shard("us-east-0", 0, SLOTS - 1, "us-east", "us-east")], GATEWAYS)
    async with run_gateway(tmp_path / "data", region="us-east", shard_map_file=map_file) as gw:
        async with gw.http() as anonymous:  # no token: a client that lost its gateway
            r = await anonymous.get("/v1/regions")
            assert r.status_code == 200, r.text
            assert r.json() == {
                "here": "us-east",
                "regions": [
                    {
                        "name": "us-east",
                        "gateway": US,
                        "home_shards": 1,
                        "owned_shards": 1,
                        "health": "Healthy",
                    },
                    {
                        "name": "eu-west",
                        "gateway": EU,
                        "home_shards": 0,
                        "owned_shards": 0,
                        "health": None,
                    },
                ],
            }
            assert (await anonymous.get("/v1/regions/mine")).status_code == 401

        alice = await register(gw)
        async with alice.http() as http:
            r = await http.get("/v1/regions/mine")
            assert r.status_code == 200, r.text
            assert r.json() == {
                "here": "us-east",
                "home_region": "us-east",
                "owner_region": "us-east",
                "gateway": US,
            }

            # Her one-slot shard (home us-east) is served by eu-west after a failover.
            publish(
                map_file,
                moving(slot_for(alice.user_id), "us-east", "us-east", "eu-west", 2),
                GATEWAYS,
            )
            for _ in range(100):  # the gateway re-reads the file every 2 s
                placed = (await http.get("/v1/regions/mine")).json()
                if placed["owner_region"] == "eu-west":
                    break
                await asyncio.sleep(0.1)
            assert placed == {
                "here": "us-east",
                "home_region": "us-east",
                "owner_region": "eu-west",
                "gateway": EU,
            }


async def test_the_sdk_moves_past_a_refused_gateway_and_follows_its_region(
    tmp_path: Path,
) -> None:
    map_file = tmp_path / "shardmap.json"
    publish(map_file, [Shard("us-east-0", 0, SLOTS - 1, "us-east", "us-east")], GATEWAYS)
    async with run_gateway(tmp_path / "data", region="us-east", shard_map_file=map_file) as gw:
        down = f"http://127.0.0.1:{closed_port()}"
        api = Api(f"{down}, {gw.url}")
        try:
            phone = new_phone()
            await api.request_code(phone)  # refused by the first: sent to the second
            assert api.base_url == gw.url.rstrip("/")
            tokens = await api.register(phone, gw.code_for(phone), 1, "laptop")
            assert await api.follow() == "us-east"  # served where it is: it stays
            assert api.base_url == gw.url.rstrip("/")

            # A failover moves the account's shard to eu-west, whose gateway the map
            # publishes (here the same server under another name).
            eu_url = gw.url.replace("127.0.0.1", "localhost").rstrip("/")
            moved = moving(slot_for(tokens.user_id), "us-east", "us-east", "eu-west", 2)
            publish(map_file, moved, {"us-east": US, "eu-west": eu_url})
            for _ in range(100):  # the gateway re-reads the file every 2 s
                if await api.follow() == "eu-west":
                    break
                await asyncio.sleep(0.1)
            assert api.base_url == eu_url
            me = await api.call("GET", "/v1/users/me")  # and the calls go there now
            assert me["user_id"] == tokens.user_id
            assert api.gateways == [down, gw.url.rstrip("/"), eu_url]
        finally:
            await api.close()


async def test_a_socket_whose_account_moved_to_another_region_is_sent_there(
    tmp_path: Path,
) -> None:
    """Wake-ups for an account are published in the region that owns its shard: a socket
    left open where the account was served before would hear of new messages only by
    polling. When the map moves the account away (a failback, a failover), its socket is
    closed with 4003 and told to look up its region; another account's socket stays."""
    map_file = tmp_path / "shardmap.json"
    publish(map_file, [Shard("us-east-0", 0, SLOTS - 1, "us-east", "us-east")], GATEWAYS)
    async with run_gateway(tmp_path / "data", region="us-east", shard_map_file=map_file) as gw:
        alice, bob = await register(gw), await register(gw)
        while slot_for(bob.user_id) == slot_for(alice.user_id):
            bob = await register(gw)
        alice_sock, bob_sock = await online(alice), await online(bob)

        publish(
            map_file, moving(slot_for(alice.user_id), "us-east", "us-east", "eu-west", 2), GATEWAYS
        )
        # The file is re-read every 2 s, and each socket checks every 0.5 s here.
        await asyncio.wait_for(alice_sock.ws.wait_closed(), timeout=15.0)
        assert alice_sock.ws.close_code == wsproto.CLOSE_SERVED_ELSEWHERE == 4003
        assert "eu-west" in alice_sock.ws.close_reason
        # Bob's shard did not move: after the same checks his socket still answers.
        pong = await bob_sock.request("ping", {})
        assert pong["status"] == 200, pong
        assert bob_sock.ws.close_code is None


async def test_the_sdk_listens_on_past_a_gateway_that_drops_connections(
    tmp_path: Path,
) -> None:
    """A load balancer in front of a lost region takes connections and drops them before
    any answer: the client's listener moves on to the next gateway, it does not die."""

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    balancer = await asyncio.start_server(drop, "127.0.0.1", 0)
    dropping = f"http://127.0.0.1:{balancer.sockets[0].getsockname()[1]}"
    async with run_gateway(tmp_path / "data") as gw:
        client = Client(f"{gw.url},{dropping}", tmp_path / "me.db")

        async def code(phone: str) -> str:
            return gw.code_for(phone)

        await client.register(new_phone(), code)
        client.api.use_gateway(dropping)  # its region's gateway, as it was last told
        listener = asyncio.create_task(client.listen())
        try:
            await asyncio.wait_for(client.queue_empty.wait(), timeout=15.0)
            assert client.api.base_url == gw.url.rstrip("/")
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await client.close()
            balancer.close()
            await balancer.wait_closed()
