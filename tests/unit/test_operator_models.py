"""The custom resource models: examples, defaults, round trips, and the rules pydantic
enforces alongside the CRD's CEL rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tidings.config import COMPONENTS, Settings
from tidings_operator.models import (
    REGION_COMPONENTS,
    ChatRegion,
    MessageShard,
    PushPool,
    parse,
)
from tidings_operator.models.chatregion import ChatRegionSpec
from tidings_operator.models.pushpool import PushPoolSpec
from tidings_operator.names import (
    API_VERSION,
    FINALIZER,
    GROUP,
    PAUSED_ANNOTATION,
    UNMANAGED_ANNOTATION,
    VERSION,
    is_true,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]


def region_body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "tidings:1",
        "kafka": {"bootstrapServers": "kafka:9092"},
        "cassandra": {"contactPoints": ["cassandra"]},
        "redis": {"url": "redis://redis:6379/0"},
        "s3": {"bucket": "media"},
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "ChatRegion",
        "metadata": {"name": "us-east"},
        "spec": base | spec,
    }


def pool_body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "region": "us-east",
        "provider": "fcm",
        "credentialsSecret": {"name": "fcm", "key": "sa.json"},
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "PushPool",
        "metadata": {"name": "us-east-fcm"},
        "spec": base | spec,
    }


def test_the_examples_are_the_promised_set() -> None:
    names = {path.name for path in EXAMPLES.glob("*.yaml")}
    assert {"us-east.yaml", "two-regions.yaml", "pushpool-fcm.yaml", "pushpool-apns.yaml"} <= names
    kinds = [(name, doc["kind"]) for name, doc in example_docs()]
    assert kinds.count(("two-regions.yaml", "ChatRegion")) == 2


@pytest.mark.parametrize(("name", "doc"), example_docs(), ids=lambda v: str(v)[:30])
def test_every_example_parses_and_round_trips(name: str, doc: dict[str, Any]) -> None:
    model = parse(doc)
    assert model.kind == doc["kind"]
    dumped = model.model_dump(mode="json", exclude_none=True)
    assert parse(dumped) == model
    # The wire form is camelCase, as the example spells it.
    assert set(doc["spec"]) <= set(dumped["spec"])


def test_two_regions_split_the_slots_and_peer_each_other() -> None:
    regions = [parse(doc) for name, doc in example_docs() if name == "two-regions.yaml"]
    assert all(isinstance(r, ChatRegion) for r in regions)
    us, eu = regions
    assert isinstance(us, ChatRegion)
    assert isinstance(eu, ChatRegion)
    assert us.spec.slot_range.last + 1 == eu.spec.slot_range.first
    assert [p.name for p in us.spec.peers] == [eu.region]
    assert [p.name for p in eu.spec.peers] == [us.region]
    assert us.replication == eu.replication == {"us-east": 3, "eu-west": 3}


def test_chat_region_defaults() -> None:
    region = parse(region_body())
    assert isinstance(region, ChatRegion)
    spec = region.spec
    assert spec.failover.policy == "Manual"
    assert spec.failover.detection_window_seconds == 30
    assert spec.deletion_policy == "Retain"
    assert spec.kafka.partitions == Settings.model_fields["partitions"].default
    assert spec.kafka.replication_factor == 3
    assert spec.cassandra.keyspace == Settings.model_fields["cassandra_keyspace"].default
    assert spec.cassandra.port == Settings.model_fields["cassandra_port"].default
    assert (spec.slot_range.first, spec.slot_range.last) == (0, 1023)
    assert spec.shards == 8
    assert spec.components.gateway.replicas == 2
    assert spec.components.router.replicas == 1
    assert spec.dev_mode is False
    assert region.datacenter == "us-east"
    assert region.replication == {"us-east": 1}


def test_components_cover_the_platform_but_push() -> None:
    assert set(REGION_COMPONENTS) | {"push"} == set(COMPONENTS)
    region = parse(region_body())
    assert isinstance(region, ChatRegion)
    for component in REGION_COMPONENTS:
        assert region.spec.components.of(component).replicas >= 1
    with pytest.raises(KeyError):
        region.spec.components.of("push")


def test_quantities_accept_numbers_and_keep_text() -> None:
    spec = ChatRegionSpec.model_validate(
        region_body(components={"media": {"resources": {"requests": {"cpu": 1, "memory": "1Gi"}}}})[
            "spec"
        ]
    )
    assert spec.components.media.resources.requests == {"cpu": "1", "memory": "1Gi"}
    with pytest.raises(ValidationError):
        ChatRegionSpec.model_validate(
            region_body(components={"media": {"resources": {"limits": {"cpu": "lots"}}}})["spec"]
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (region_body(redis={}), "exactly one of url, urlSecretRef"),
        (
            region_body(redis={"url": "redis://r", "urlSecretRef": {"name": "s", "key": "k"}}),
            "exactly one",
        ),
        (
            region_body(
                components={"gateway": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}
            ),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            region_body(components={"router": {"autoscaling": {"maxReplicas": 4}}}),
            "resources.requests.cpu",
        ),
        (region_body(peers=[{"name": "us-east"}]), "its own peer"),
        (region_body(cassandra={"contactPoints": ["c"], "replication": {"eu": 3}}), "us-east"),
        (
            region_body(
                cassandra={"contactPoints": ["c"], "replication": {"us-east": 3, "bad dc": 1}}
            ),
            "invalid datacenters",
        ),
        (region_body(slotRange={"first": 10, "last": 11}, shards=3), "shards must not exceed"),
        (region_body(slotRange={"first": 11, "last": 10}), "first must not exceed last"),
        (region_body(kafka={"bootstrapServers": "a:1,,b:2"}), "bootstrapServers"),
        (region_body(kafka={"bootstrapServers": "k:9092", "partitions": 0}), "partitions"),
        (region_body(cassandra={"contactPoints": [], "keyspace": "x"}), "contactPoints"),
        (region_body(cassandra={"contactPoints": ["c"], "keyspace": "Bad-Name"}), "keyspace"),
        (region_body(unknownField=1), "unknownField"),
    ],
)
def test_invalid_chat_regions_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(body)


@pytest.mark.parametrize("name", ["US-east", "1east", "east-", "a" * 41, "us.east", "east\n"])
def test_region_names_are_dns_labels_of_at_most_40(name: str) -> None:
    body = region_body()
    body["metadata"]["name"] = name
    with pytest.raises(ValidationError, match="region name"):
        parse(body)


def test_push_pool_defaults_are_the_platforms() -> None:
    pool = parse(pool_body())
    assert isinstance(pool, PushPool)
    fields = Settings.model_fields
    spec = pool.spec
    assert spec.rate == fields["push_rate"].default
    assert spec.burst == fields["push_burst"].default
    assert spec.concurrency == fields["push_concurrency"].default
    assert spec.max_attempts == fields["push_max_attempts"].default
    assert spec.backoff_base_seconds == fields["push_backoff_base_s"].default
    assert spec.collapse_seconds == fields["push_collapse_s"].default
    assert spec.replicas == 1
    assert spec.autoscaling is None


@pytest.mark.parametrize(
    ("pool_field", "setting"),
    [
        ("rate", "push_rate"),
        ("burst", "push_burst"),
        ("concurrency", "push_concurrency"),
        ("max_attempts", "push_max_attempts"),
        ("backoff_base_seconds", "push_backoff_base_s"),
        ("collapse_seconds", "push_collapse_s"),
    ],
)
def test_push_pool_bounds_are_the_platforms(pool_field: str, setting: str) -> None:
    """A value the CRD admits is one the push worker starts with, and the reverse."""
    ours = PushPoolSpec.model_fields[pool_field].metadata
    theirs = Settings.model_fields[setting].metadata
    assert sorted(map(repr, ours)) == sorted(map(repr, theirs))


def test_kafka_partition_bounds_are_the_platforms() -> None:
    from tidings_operator.models.chatregion import KafkaSpec

    ours = KafkaSpec.model_fields["partitions"].metadata
    assert sorted(map(repr, ours)) == sorted(
        map(repr, Settings.model_fields["partitions"].metadata)
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"provider": "apns"}, "apns needs the apns section"),
        (
            {"fcm": {}, "provider": "apns", "apns": {"keyId": "k", "teamId": "t", "topic": "x"}},
            "takes no",
        ),
        ({"apns": {"keyId": "k", "teamId": "t", "topic": "x"}}, "takes no"),
        ({"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}, "minReplicas"),
        ({"rate": 0}, "rate"),
        ({"provider": "sms"}, "provider"),
        ({"apns": None, "provider": "apns"}, "apns"),
    ],
)
def test_invalid_push_pools_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(pool_body(**spec))


def test_message_shard_rules() -> None:
    body = {
        "apiVersion": API_VERSION,
        "kind": "MessageShard",
        "metadata": {"name": "us-east-0"},
        "spec": {
            "region": "us-east",
            "index": 0,
            "firstSlot": 0,
            "lastSlot": 127,
            "owner": "us-east",
        },
    }
    shard = parse(body)
    assert isinstance(shard, MessageShard)
    assert shard.spec.epoch == 1
    core = shard.as_core_shard()
    assert (core.name, core.first_slot, core.last_slot, core.owner_region) == (
        "us-east-0",
        0,
        127,
        "us-east",
    )
    body["spec"] |= {"firstSlot": 200}
    with pytest.raises(ValidationError, match="firstSlot must not exceed lastSlot"):
        parse(body)


def test_parse_picks_the_model_by_kind() -> None:
    assert isinstance(parse(pool_body()), PushPool)
    with pytest.raises(ValidationError):
        parse({**pool_body(), "kind": "Deployment"})


def test_status_parses_leniently_and_metadata_ignores_extras() -> None:
    body = region_body()
    body["metadata"] |= {"managedFields": [{}], "uid": "u", "generation": 3}
    body["status"] = {"phase": "Ready", "futureField": 1, "conditions": []}
    region = parse(body)
    assert isinstance(region, ChatRegion)
    assert region.metadata.generation == 3
    assert region.status is not None
    assert region.status.phase == "Ready"


def test_names_and_escape_hatches() -> None:
    assert f"{GROUP}/{VERSION}" == API_VERSION
    assert FINALIZER == "tidings.dev/finalizer"
    assert PAUSED_ANNOTATION == "tidings.dev/paused"
    assert UNMANAGED_ANNOTATION == "tidings.dev/unmanaged"
    assert is_true({PAUSED_ANNOTATION: "True "}, PAUSED_ANNOTATION)
    assert not is_true({PAUSED_ANNOTATION: "yes"}, PAUSED_ANNOTATION)
    assert not is_true(None, PAUSED_ANNOTATION)
