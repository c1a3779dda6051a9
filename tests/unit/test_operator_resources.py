"""The pure builders of a ChatRegion's and a PushPool's children.

Golden files pin the full manifests of the examples; regenerate them after an intended
change with ``TIDINGS_UPDATE_GOLDEN=1 pytest tests/unit/test_operator_resources.py`` and
review the diff. The other tests state the properties a golden file cannot explain.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tidings.config import Settings
from tidings.core.shardmap import SLOTS, single_region
from tidings_operator.models import REGION_COMPONENTS, ChatRegion, MessageShard, PushPool, parse
from tidings_operator.models.chatregion import TracingSpec
from tidings_operator.names import SETTINGS_HASH_ANNOTATION
from tidings_operator.resources import pool_children, region_children
from tidings_operator.resources.env import env_name, setting_for
from tidings_operator.resources.meta import owner_reference
from tidings_operator.resources.region import image_tag, settings_hash
from tidings_operator.resources.settings import secret_names, settings_data
from tidings_operator.resources.shards import (
    home_shards,
    shard_map_config_map_manifest,
    shard_map_problem,
    slot_bounds,
)
from tidings_operator.yamltext import dumps_all

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
NAMESPACE = "tidings"
UID = "6f1c2a50-0000-4000-8000-000000000001"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def load(name: str) -> list[Any]:
    """The example's resources as stored: in a namespace, with a uid."""
    models = []
    for doc in yaml.safe_load_all((REPO / "examples" / name).read_text()):
        doc["metadata"] |= {"namespace": NAMESPACE, "uid": UID, "generation": 1}
        models.append(parse(doc))
    return models


def us_east() -> ChatRegion:
    (region,) = load("us-east.yaml")
    assert isinstance(region, ChatRegion)
    return region


def pool(name: str) -> PushPool:
    (found,) = load(name)
    assert isinstance(found, PushPool)
    return found


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TIDINGS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.is_file(), f"no golden file {name}: run with TIDINGS_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: rerun with TIDINGS_UPDATE_GOLDEN=1"


def all_children() -> list[dict[str, Any]]:
    region = us_east()
    children = region_children(region)
    for name in ("pushpool-fcm.yaml", "pushpool-apns.yaml"):
        children += pool_children(pool(name), region)
    return children


def containers(children: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for child in children:
        if child["kind"] == "Deployment":
            yield from child["spec"]["template"]["spec"]["containers"]


# --------------------------------------------------------------------------- golden


def test_us_east_children_match_the_golden_file() -> None:
    check_golden("us-east.yaml", dumps_all(region_children(us_east())))


@pytest.mark.parametrize("name", ["pushpool-fcm.yaml", "pushpool-apns.yaml"])
def test_push_pool_children_match_the_golden_file(name: str) -> None:
    check_golden(name, dumps_all(pool_children(pool(name), us_east())))


def test_golden_files_are_valid_yaml_of_the_same_objects() -> None:
    loaded = list(yaml.safe_load_all((GOLDEN / "us-east.yaml").read_text()))
    assert loaded == region_children(us_east())


# --------------------------------------------------------------------------- ownership


def test_every_child_has_a_controller_owner_reference() -> None:
    region = us_east()
    for child in all_children():
        refs = child["metadata"]["ownerReferences"]
        assert len(refs) == 1, child["metadata"]["name"]
        (ref,) = refs
        assert ref["uid"] == UID
        assert ref["controller"] is True
        assert ref["blockOwnerDeletion"] is True
        assert ref["apiVersion"] == "tidings.dev/v1beta1"
        owned_by_pool = child["metadata"]["labels"].get("app.kubernetes.io/component") == "push"
        assert ref["kind"] == ("PushPool" if owned_by_pool else "ChatRegion")
        if ref["kind"] == "ChatRegion":
            assert ref["name"] == region.metadata.name
        assert child["metadata"]["namespace"] == NAMESPACE


def test_owner_reference_needs_the_stored_uid() -> None:
    with pytest.raises(ValueError, match="no uid"):
        owner_reference(api_version="tidings.dev/v1alpha1", kind="ChatRegion", name="x", uid="")
    region = us_east().model_copy(
        update={"metadata": us_east().metadata.model_copy(update={"uid": ""})}
    )
    with pytest.raises(ValueError, match="no uid"):
        region_children(region)


def test_child_names_are_deterministic_unique_and_valid() -> None:
    children = all_children()
    assert all_children() == children
    keys = Counter((c["kind"], c["metadata"]["name"]) for c in children)
    assert [k for k, n in keys.items() if n > 1] == []
    for child in children:
        name = child["metadata"]["name"]
        assert DNS_LABEL.match(name), name
        assert len(name) <= 63
        for key, value in child["metadata"]["labels"].items():
            assert LABEL_VALUE.match(value), (key, value)
            assert len(value) <= 63, (key, value)


def test_what_a_region_creates() -> None:
    kinds = Counter(c["kind"] for c in region_children(us_east()))
    assert kinds == {
        "ServiceAccount": 1,
        "Role": 1,
        "RoleBinding": 1,
        "ConfigMap": 2,
        "Deployment": 6,
        "Service": 3,
        "HorizontalPodAutoscaler": 1,  # only the gateway autoscales in the example
        "PodDisruptionBudget": 6,
        "MessageShard": 8,
    }


# --------------------------------------------------------------------------- workloads


def by_kind(children: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in children if c["kind"] == kind}


def test_one_deployment_per_component_serving_it() -> None:
    deployments = by_kind(region_children(us_east()), "Deployment")
    assert sorted(deployments) == sorted(f"us-east-{c}" for c in REGION_COMPONENTS)
    for name, deployment in deployments.items():
        component = name.removeprefix("us-east-")
        (main,) = deployment["spec"]["template"]["spec"]["containers"]
        assert main["command"] == ["tidings"]
        assert main["args"] == ["serve", component]
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert main["envFrom"] == [{"configMapRef": {"name": "us-east-settings"}}]
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        assert "app.kubernetes.io/version" not in selector  # selectors are immutable
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        # Scraped on the operations port; probes and Services stay on the client port.
        assert annotations["prometheus.io/port"] == "9090"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert main["ports"] == [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "ops", "containerPort": 9090, "protocol": "TCP"},
        ]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert main[probe]["httpGet"]["port"] == "http"


def test_autoscaled_deployments_leave_replicas_to_the_hpa() -> None:
    children = region_children(us_east())
    hpas = by_kind(children, "HorizontalPodAutoscaler")
    assert list(hpas) == ["us-east-gateway"]
    hpa = hpas["us-east-gateway"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "us-east-gateway",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    deployments = by_kind(children, "Deployment")
    assert "replicas" not in deployments["us-east-gateway"]["spec"]
    assert deployments["us-east-router"]["spec"]["replicas"] == 2
    assert deployments["us-east-delivery"]["spec"]["replicas"] == 3
    assert deployments["us-east-media"]["spec"]["replicas"] == 1


def test_services_only_for_components_with_client_routes() -> None:
    services = by_kind(region_children(us_east()), "Service")
    assert sorted(services) == ["us-east-gateway", "us-east-media", "us-east-router"]
    assert services["us-east-gateway"]["spec"]["type"] == "LoadBalancer"
    assert services["us-east-router"]["spec"]["type"] == "ClusterIP"
    for service in services.values():
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == "http"


def test_a_disruption_budget_per_workload() -> None:
    budgets = by_kind(all_children(), "PodDisruptionBudget")
    deployments = by_kind(all_children(), "Deployment")
    assert sorted(budgets) == sorted(deployments)
    for name, budget in budgets.items():
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"] == deployments[name]["spec"]["selector"]


def test_pods_are_restricted() -> None:
    for child in all_children():
        if child["kind"] != "Deployment":
            continue
        pod = child["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for main in pod["containers"]:
            security = main["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            mounted = {m["name"] for m in main["volumeMounts"]}
            assert mounted <= {v["name"] for v in pod["volumes"]}
            assert {"data", "tmp"} <= mounted  # writable paths on a read-only root


def test_platform_identity_is_least_privilege() -> None:
    children = region_children(us_east())
    (account,) = by_kind(children, "ServiceAccount").values()
    assert account["automountServiceAccountToken"] is False
    (role,) = by_kind(children, "Role").values()
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["us-east-shardmap"],
            "verbs": ["get", "watch"],
        }
    ]
    (binding,) = by_kind(children, "RoleBinding").values()
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "us-east-platform", "namespace": NAMESPACE}
    ]


# --------------------------------------------------------------------------- settings


def emitted_env_names(children: list[dict[str, Any]]) -> set[str]:
    names = set()
    for child in children:
        if child["kind"] == "ConfigMap" and child["metadata"]["name"].endswith("-settings"):
            names |= set(child["data"])
    for main in containers(children):
        names |= {e["name"] for e in main["env"]}
        for source in main["envFrom"]:
            assert set(source) == {"configMapRef"}
    return names


def test_every_env_var_is_a_platform_setting() -> None:
    names = emitted_env_names(all_children())
    assert names
    unknown = {n for n in names if setting_for(n) is None}
    assert unknown == set()


def test_env_names_come_from_settings_fields() -> None:
    assert env_name("push_rate") == "TIDINGS_PUSH_RATE"
    assert env_name("cassandra_local_dc") == "TIDINGS_CASSANDRA_LOCAL_DC"
    with pytest.raises(KeyError, match="not a field"):
        env_name("push_ratee")
    assert setting_for("TIDINGS_PUSH_RATE") == "push_rate"
    assert setting_for("TIDINGS_NOPE") is None
    assert setting_for("PATH") is None


def test_the_settings_config_map_starts_the_platform_as_asked() -> None:
    region = us_east()
    data = settings_data(region)
    settings = Settings(**{setting_for(k) or k: v for k, v in data.items()})  # type: ignore[arg-type]
    assert settings.engine == "distributed"
    assert settings.region == "us-east"
    assert settings.partitions == 24
    assert settings.kafka_bootstrap == "tidings-kafka-bootstrap.kafka.svc:9092"
    assert settings.kafka_replication_factor == 3
    assert settings.cassandra_local_dc == "us-east"
    assert settings.cassandra_replication == "us-east:3"
    assert settings.cassandra_keyspace == "tidings"
    assert settings.s3_bucket == "tidings-media-us-east"
    assert settings.host == "0.0.0.0"
    assert settings.port == 8080
    assert settings.ops_port == 9090
    assert settings.dev_mode is True
    assert settings.redis_url == ""  # from a Secret in this example, not the ConfigMap
    for value in data.values():
        assert isinstance(value, str)


def test_tracing_reaches_the_pods_only_when_the_region_asks_for_it() -> None:
    region = us_east()
    assert region.spec.tracing is None
    assert not {"TIDINGS_OTLP_ENDPOINT", "TIDINGS_TRACE_SAMPLE_RATIO"} & set(settings_data(region))
    traced = region.model_copy(
        update={
            "spec": region.spec.model_copy(
                update={
                    "tracing": TracingSpec(
                        otlp_endpoint="http://otel-collector.observability:4318",
                        sample_ratio=0.05,
                    )
                }
            )
        }
    )
    data = settings_data(traced)
    settings = Settings(**{setting_for(k) or k: v for k, v in data.items()})  # type: ignore[arg-type]
    assert settings.otlp_endpoint == "http://otel-collector.observability:4318"
    assert settings.trace_sample_ratio == 0.05
    with pytest.raises(ValueError, match="less than or equal to 1"):
        TracingSpec(otlp_endpoint="http://collector:4318", sample_ratio=2)
    with pytest.raises(ValueError, match="pattern"):
        TracingSpec(otlp_endpoint="collector:4318")


def test_credentials_come_from_secrets_only() -> None:
    region = us_east()
    data = settings_data(region)
    secret_settings = {"redis_url", "cassandra_username", "cassandra_password"}
    secret_settings |= {"s3_access_key", "s3_secret_key"}
    assert not {setting_for(k) for k in data} & secret_settings
    deployment = by_kind(region_children(region), "Deployment")["us-east-gateway"]
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    from_secrets = {setting_for(e["name"]) for e in main["env"] if "valueFrom" in e}
    assert from_secrets == secret_settings


def test_the_secrets_a_region_reads() -> None:
    assert secret_names(us_east()) == ["tidings-cassandra", "tidings-redis", "tidings-s3"]
    (us, _) = load("two-regions.yaml")
    assert isinstance(us, ChatRegion)
    assert secret_names(us) == []


def test_settings_changes_roll_the_pods_and_replica_changes_do_not() -> None:
    region = us_east()
    before = settings_hash(region)
    assert settings_hash(region) == before
    grown = region.model_copy(
        update={
            "spec": region.spec.model_copy(
                update={"kafka": region.spec.kafka.model_copy(update={"partitions": 48})}
            )
        }
    )
    assert settings_hash(grown) != before
    assert settings_hash(region, {"tidings-s3": "42"}) != before
    body = region.model_dump(mode="json", exclude_none=True)
    body["spec"]["components"]["media"]["replicas"] = 5
    scaled = parse(body)
    assert isinstance(scaled, ChatRegion)
    deployment = by_kind(region_children(scaled), "Deployment")["us-east-media"]
    assert deployment["spec"]["replicas"] == 5
    annotation = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotation[SETTINGS_HASH_ANNOTATION] == before


def test_image_tag_for_the_version_label() -> None:
    assert image_tag("ghcr.io/tidings/tidings:0.1.0") == "0.1.0"
    assert image_tag("registry:5000/tidings") == "latest"
    assert image_tag("tidings:1.2@sha256:abc") == "1.2"
    assert image_tag("tidings:" + "x" * 70 + "-") == "x" * 63


# --------------------------------------------------------------------------- shards


def test_one_region_gets_the_platforms_own_shards() -> None:
    region = us_east()
    assert tuple(home_shards(region)) == single_region("us-east", 8).shards
    shards = [c for c in region_children(region) if c["kind"] == "MessageShard"]
    assert [s["metadata"]["name"] for s in shards] == [f"us-east-{i}" for i in range(8)]
    for index, body in enumerate(shards):
        shard = parse(body)
        assert isinstance(shard, MessageShard)
        assert shard.spec.index == index
        assert (shard.spec.owner, shard.spec.epoch) == ("us-east", 1)


def test_two_regions_make_one_whole_shard_map() -> None:
    us, eu = load("two-regions.yaml")
    assert isinstance(us, ChatRegion)
    assert isinstance(eu, ChatRegion)
    both = home_shards(us) + home_shards(eu)
    assert shard_map_problem(both) is None
    assert {s.home_region for s in both} == {"us-east", "eu-west"}
    assert "expected 512" not in (shard_map_problem(home_shards(eu)) or "expected 512")
    assert shard_map_problem(home_shards(us)) is not None  # half the map is not a map
    config = shard_map_config_map_manifest(us, both)
    document = yaml.safe_load(config["data"]["shardmap.json"])
    assert [s["name"] for s in document["shards"]] == [s.name for s in both]


@given(
    st.integers(0, SLOTS - 1)
    .flatmap(lambda first: st.tuples(st.just(first), st.integers(first, SLOTS - 1)))
    .flatmap(lambda r: st.tuples(st.just(r), st.integers(1, r[1] - r[0] + 1)))
)
def test_slot_bounds_cut_contiguous_nearly_equal_ranges(case: tuple[tuple[int, int], int]) -> None:
    (first, last), count = case
    bounds = slot_bounds(first, last, count)
    assert len(bounds) == count
    assert bounds[0][0] == first
    assert bounds[-1][1] == last
    for (_, hi), (lo, _) in itertools.pairwise(bounds):
        assert lo == hi + 1
    sizes = {hi - lo + 1 for lo, hi in bounds}
    assert min(sizes) >= 1
    assert max(sizes) - min(sizes) <= 1


def test_slot_bounds_refuse_impossible_cuts() -> None:
    with pytest.raises(ValueError, match="cannot cut"):
        slot_bounds(0, 3, 5)
    with pytest.raises(ValueError, match="cannot cut"):
        slot_bounds(0, 3, 0)
