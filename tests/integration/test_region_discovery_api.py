"""``GET /v1/regions`` and ``GET /v1/regions/mine`` on a gateway that follows its
region's shard map file: after a failover moves the caller's shard, the caller is told
to go to the region serving it now, and where that region's gateway is."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from harness import register, run_gateway
from tidings.core.shardmap import SLOTS, Shard, shard_map_document, slot_for

US, EU = "https://us.example.com", "https://eu.example.com"
GATEWAYS = {"us-east": US, "eu-west": EU}


def publish(path: Path, shards: list[Shard]) -> None:
    """Swap the whole file in at once, as the kubelet does for a ConfigMap volume."""
    staged = path.with_suffix(".next")
    staged.write_text(shard_map_document(shards, GATEWAYS))
    os.replace(staged, path)


async def test_a_client_is_told_which_region_serves_it_and_where(tmp_path: Path) -> None:
    map_file = tmp_path / "shardmap.json"
    publish(map_file, [Shard("us-east-0", 0, SLOTS - 1, "us-east", "us-east")])
    async with run_gateway(tmp_path / "data", region="us-east", shard_map_file=map_file) as gw:
        async with gw.http() as anonymous:  # no token: a client that lost its gateway
            r = await anonymous.get("/v1/regions")
            assert r.status_code == 200, r.text
            assert r.json() == {
                "here": "us-east",
                "regions": [
                    {"name": "us-east", "gateway": US, "home_shards": 1, "owned_shards": 1},
                    {"name": "eu-west", "gateway": EU, "home_shards": 0, "owned_shards": 0},
                ],
            }
            assert (await anonymous.get("/v1/regions/mine")).status_code == 401

        alice = await register(gw)
        async with alice.http() as http:
            r = await http.get("/v1/regions/mine")
            assert r.status_code == 200, r.text
            assert r.json() == {"home_region": "us-east", "owner_region": "us-east", "gateway": US}

            # Her one-slot shard (home us-east) is served by eu-west after a failover.
            slot = slot_for(alice.user_id)
            shards = [Shard("eu-west-0", slot, slot, "us-east", "eu-west", 2)]
            if slot > 0:
                shards.append(Shard("us-east-0", 0, slot - 1, "us-east", "us-east"))
            if slot < SLOTS - 1:
                shards.append(Shard("us-east-1", slot + 1, SLOTS - 1, "us-east", "us-east"))
            publish(map_file, shards)
            for _ in range(100):  # the gateway re-reads the file every 2 s
                placed = (await http.get("/v1/regions/mine")).json()
                if placed["owner_region"] == "eu-west":
                    break
                await asyncio.sleep(0.1)
            assert placed == {"home_region": "us-east", "owner_region": "eu-west", "gateway": EU}
