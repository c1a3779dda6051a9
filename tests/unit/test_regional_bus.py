"""Which Kafka cluster a region produces to: its peers' own clusters named by
``TIDINGS_KAFKA_PEERS``, as the operator writes it from ``spec.peers``."""

from __future__ import annotations

import pytest

from fake_kube import region_body
from tidings.core.shardmap import deliveries_topic, region_topics, topic_region
from tidings.engines.regional_bus import parse_kafka_peers
from tidings_operator.models import ChatRegion, parse
from tidings_operator.resources.settings import peer_clusters, settings_data


def test_peers_are_parsed_with_their_bootstrap_lists() -> None:
    assert parse_kafka_peers("") == {}
    assert parse_kafka_peers(" eu-west = k1:9092, k2:9092 ; ap-south=k3:9093;") == {
        "eu-west": "k1:9092,k2:9092",
        "ap-south": "k3:9093",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("eu-west", "is not region=host:port"),
        ("EU=k1:9092", "is not region=host:port"),
        ("eu-west=", "is not a list of host:port"),
        ("eu-west=k1", "is not a list of host:port"),
        ("eu-west=k1:9092;eu-west=k2:9092", "named twice"),
    ],
)
def test_a_bad_peer_list_is_refused_naming_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_kafka_peers(text)


def test_every_topic_of_a_region_names_that_region() -> None:
    assert {topic_region(t) for t in region_topics("eu-west")} == {"eu-west"}
    assert topic_region(deliveries_topic("ap-south")) == "ap-south"
    assert topic_region("other.topic") is None
    assert topic_region("tidings.eu-west") is None


def test_the_operator_names_only_peers_with_a_cluster_of_their_own() -> None:
    body = region_body()
    body["spec"]["kafka"] = {"bootstrapServers": "k1:9092,k2:9092"}
    body["spec"]["peers"] = [
        {"name": "eu-west", "kafkaBootstrapServers": "eu1:9092, eu2:9092"},
        {"name": "ap-south", "kafkaBootstrapServers": "k2:9092,k1:9092"},  # the same one
        {"name": "sa-east"},  # not given: shares this region's
    ]
    region = parse(body)
    assert isinstance(region, ChatRegion)
    assert peer_clusters(region) == {"eu-west": "eu1:9092,eu2:9092"}
    assert settings_data(region)["TIDINGS_KAFKA_PEERS"] == "eu-west=eu1:9092,eu2:9092"

    body["spec"]["peers"] = body["spec"]["peers"][1:]  # peers sharing the cluster only
    shared = parse(body)
    assert isinstance(shared, ChatRegion)
    assert "TIDINGS_KAFKA_PEERS" not in settings_data(shared)  # its pods do not roll
