"""Where a client is served: the gateways in the shard map the operator publishes, and
the pure answers of ``GET /v1/regions`` and ``GET /v1/regions/mine``."""

from __future__ import annotations

import json

import pytest

from fake_kube import region_body
from tidings.core.discovery import Placement, RegionView, placement_of, regions_of
from tidings.core.shardmap import (
    SLOTS,
    Shard,
    ShardMap,
    ShardMapError,
    parse_shard_map,
    shard_map_document,
    slot_for,
)
from tidings_operator.models import ChatRegion, parse
from tidings_operator.resources.shards import peer_health, region_gateways

HALF = SLOTS // 2
US = Shard("us-east-0", 0, HALF - 1, "us-east", "us-east", 1)
EU_MOVED = Shard("eu-west-0", HALF, SLOTS - 1, "eu-west", "us-east", 2)  # taken over
GATEWAYS = {"us-east": "https://us.example.com", "eu-west": "https://eu.example.com/"}


def user_in(first: int, last: int) -> str:
    return next(u for u in (f"user-{i}" for i in range(10_000)) if first <= slot_for(u) <= last)


def test_gateways_travel_in_the_shard_map_document() -> None:
    text = shard_map_document([US, EU_MOVED], GATEWAYS)
    assert json.loads(text)["regions"] == {
        "eu-west": {"gateway": "https://eu.example.com/"},
        "us-east": {"gateway": "https://us.example.com"},
    }
    shard_map = parse_shard_map(text, "us-east")
    assert shard_map.gateway_of("eu-west") == "https://eu.example.com"  # no trailing /
    assert shard_map.gateway_of("ap-south") is None
    # A map without gateways (an older operator's) still reads.
    assert parse_shard_map(shard_map_document([US, EU_MOVED]), "us-east").gateways == ()


def test_peers_health_travels_in_the_map_and_the_answering_region_is_healthy() -> None:
    health = {"eu-west": "Failed", "ap-south": "Suspect"}
    text = shard_map_document([US, EU_MOVED], GATEWAYS, health)
    assert json.loads(text)["regions"] == {
        "ap-south": {"health": "Suspect"},
        "eu-west": {"gateway": "https://eu.example.com/", "health": "Failed"},
        "us-east": {"gateway": "https://us.example.com"},
    }
    seen = {r.name: r.health for r in regions_of(parse_shard_map(text, "us-east"), "us-east")}
    assert seen == {"us-east": "Healthy", "eu-west": "Failed", "ap-south": "Suspect"}


def test_the_operator_publishes_what_its_failover_loop_judged_of_each_peer() -> None:
    body = region_body()
    body["status"] = {
        "failover": {
            "regions": 3,
            "majority": 2,
            "peers": [
                {"name": "eu-west", "health": "Failed", "since": "2026-12-06T12:00:00Z"},
                {"name": "ap-south", "health": "Healthy", "since": "2026-12-06T12:00:00Z"},
            ],
        }
    }
    region = parse(body)
    assert isinstance(region, ChatRegion)
    assert peer_health(region) == {"eu-west": "Failed", "ap-south": "Healthy"}
    assert peer_health(parse(region_body())) == {}  # type: ignore[arg-type]


def test_a_gateway_that_is_no_url_is_left_out_not_the_whole_map() -> None:
    doc = json.loads(shard_map_document([US, EU_MOVED]))
    doc["regions"] = {"us-east": {"gateway": "us.example.com"}, "eu-west": "x"}
    shard_map = parse_shard_map(json.dumps(doc), "us-east")
    assert shard_map.gateways == ()
    assert shard_map.owner_region(user_in(HALF, SLOTS - 1)) == "us-east"
    doc["regions"] = ["us-east"]
    with pytest.raises(ShardMapError, match="regions is list"):
        parse_shard_map(json.dumps(doc), "us-east")


def test_regions_list_each_region_with_its_gateway_and_shards_here_first() -> None:
    shard_map = ShardMap((US, EU_MOVED), (("eu-west", "https://eu.example.com"),))
    assert regions_of(shard_map, "us-east") == [
        RegionView("us-east", None, home_shards=1, owned_shards=2, health="Healthy"),
        RegionView("eu-west", "https://eu.example.com", 1, 0, health=None),
    ]


def test_a_user_whose_shard_moved_is_sent_to_the_region_serving_it() -> None:
    shard_map = parse_shard_map(shard_map_document([US, EU_MOVED], GATEWAYS), "eu-west")
    moved = user_in(HALF, SLOTS - 1)
    assert placement_of(shard_map, moved) == Placement(
        "eu-west", "us-east", "https://us.example.com"
    )
    assert placement_of(shard_map, user_in(0, HALF - 1)).owner_region == "us-east"


def test_the_operator_publishes_its_public_url_and_its_peers_gateways() -> None:
    body = region_body()
    body["spec"]["publicUrl"] = "https://us.example.com/"
    body["spec"]["peers"] = [
        {"name": "eu-west", "gatewayEndpoint": "https://eu.example.com"},
        {"name": "ap-south", "gatewayEndpoint": "ap.example.com:443"},  # no scheme: useless
        {"name": "sa-east"},
    ]
    region = parse(body)
    assert isinstance(region, ChatRegion)
    assert region_gateways(region) == {
        "us-east": "https://us.example.com",
        "eu-west": "https://eu.example.com",
    }
