"""A PushPool's children: the workers get the platform's push settings under the
platform's own names, their credentials as files, and an autoscaler on consumer lag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tidings.config import Settings
from tidings.core.push import Provider
from tidings_operator.models import ChatRegion, PushPool, parse
from tidings_operator.resources import pool_children
from tidings_operator.resources.env import setting_for
from tidings_operator.resources.pushpool import (
    pool_consumer_group,
    pool_deployment,
    pool_selector_text,
)
from tidings_operator.resources.settings import settings_data

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UID = "6f1c2a50-0000-4000-8000-000000000002"


def load(name: str) -> Any:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    doc["metadata"] |= {"namespace": "tidings", "uid": UID}
    return parse(doc)


def region() -> ChatRegion:
    found = load("us-east.yaml")
    assert isinstance(found, ChatRegion)
    return found


def pool(name: str, **spec: Any) -> PushPool:
    found = load(name)
    assert isinstance(found, PushPool)
    if spec:
        body = found.model_dump(mode="json", exclude_none=True)
        body["spec"] |= spec
        found = parse(body)
        assert isinstance(found, PushPool)
    return found


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main


def effective_settings(deployment: dict[str, Any], the_region: ChatRegion) -> Settings:
    """The Settings a worker starts with: the region's ConfigMap, then the literal env
    (Secret-backed values are left out; they are not in the manifest)."""
    main = container_of(deployment)
    env = dict(settings_data(the_region))
    env |= {e["name"]: e["value"] for e in main["env"] if "value" in e}
    kwargs = {setting_for(k): v for k, v in env.items()}
    assert None not in kwargs
    return Settings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "provider"),
    [("pushpool-fcm.yaml", Provider.FCM), ("pushpool-apns.yaml", Provider.APNS)],
)
def test_workers_start_with_the_pools_settings(name: str, provider: Provider) -> None:
    the_pool = pool(name)
    deployment = pool_deployment(the_pool, region())
    settings = effective_settings(deployment, region())
    spec = the_pool.spec
    assert settings.push_provider_list == [provider]
    assert settings.push_rate == spec.rate
    assert settings.push_burst == spec.burst
    assert settings.push_concurrency == spec.concurrency
    assert settings.push_max_attempts == spec.max_attempts
    assert settings.push_backoff_base_s == spec.backoff_base_seconds
    assert settings.push_collapse_s == spec.collapse_seconds
    assert settings.region == "us-east"
    assert settings.engine == "distributed"
    main = container_of(deployment)
    assert main["args"] == ["serve", "push"]
    assert main["envFrom"] == [{"configMapRef": {"name": "us-east-settings"}}]


def test_fcm_credentials_are_a_mounted_file() -> None:
    deployment = pool_deployment(pool("pushpool-fcm.yaml"), region())
    settings = effective_settings(deployment, region())
    assert settings.fcm_credentials_file is not None
    path = str(settings.fcm_credentials_file)
    main = container_of(deployment)
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert path.startswith(mounts["credentials"]["mountPath"] + "/")
    assert mounts["credentials"]["readOnly"] is True
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    secret = volumes["credentials"]["secret"]
    assert secret["secretName"] == "tidings-fcm"
    assert secret["items"] == [{"key": "service-account.json", "path": path.rsplit("/", 1)[1]}]
    assert not any(e["name"].startswith("TIDINGS_APNS_") for e in main["env"])


def test_apns_settings_and_key_file() -> None:
    deployment = pool_deployment(pool("pushpool-apns.yaml"), region())
    settings = effective_settings(deployment, region())
    assert settings.apns_endpoint == "production"
    assert settings.apns_key_id == "ABC123DEFG"
    assert settings.apns_team_id == "DEF123GHIJ"
    assert settings.apns_topic == "com.example.tidings"
    assert str(settings.apns_key_file) == "/var/run/secrets/tidings/push/AuthKey.p8"
    assert not any(e["name"].startswith("TIDINGS_FCM_") for e in container_of(deployment)["env"])


def test_ca_bundles_are_mounted_next_to_the_credentials() -> None:
    ca = {"caSecret": {"name": "local-ca", "key": "ca.pem"}}
    deployment = pool_deployment(pool("pushpool-fcm.yaml", fcm=ca), region())
    settings = effective_settings(deployment, region())
    assert str(settings.fcm_ca_file) == "/var/run/secrets/tidings/ca/ca.pem"
    volumes = {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert {"credentials", "ca"} <= volumes


def test_replicas_follow_the_pool_and_no_autoscaler_without_autoscaling() -> None:
    apns = pool("pushpool-apns.yaml")
    children = pool_children(apns, region())
    assert [c["kind"] for c in children] == ["Deployment", "PodDisruptionBudget"]
    assert children[0]["spec"]["replicas"] == 2
    # With autoscaling the Deployment still takes spec.replicas: the HPA writes the pool.
    fcm = pool("pushpool-fcm.yaml", replicas=4)
    assert pool_deployment(fcm, region())["spec"]["replicas"] == 4


def test_image_defaults_to_the_regions() -> None:
    main = container_of(pool_deployment(pool("pushpool-apns.yaml"), region()))
    assert main["image"] == region().spec.image
    custom = pool("pushpool-apns.yaml", image="tidings:push-canary")
    assert container_of(pool_deployment(custom, region()))["image"] == "tidings:push-canary"


def test_selector_text_matches_the_workload_selector() -> None:
    the_pool = pool("pushpool-fcm.yaml")
    selector = pool_deployment(the_pool, region())["spec"]["selector"]["matchLabels"]
    assert pool_selector_text(the_pool) == ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def test_a_pool_serves_only_its_region() -> None:
    other = pool("pushpool-fcm.yaml", region="eu-west")
    with pytest.raises(ValueError, match="belongs to eu-west"):
        pool_children(other, region())


def test_each_provider_pool_consumes_in_its_own_group() -> None:
    assert pool_consumer_group("us-east", "fcm") == "tidings.us-east.push-fcm"
    assert pool_consumer_group("us-east", "apns") == "tidings.us-east.push-apns"
