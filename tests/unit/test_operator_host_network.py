"""Pods on their node's network: a ChatRegion's ``pods`` placement and the port pair of
each component and PushPool, as the manifests carry them (the real-node tests run
them)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from tidings_operator.models import REGION_COMPONENTS, ChatRegion, PushPool, parse
from tidings_operator.resources import pool_children, region_children
from tidings_operator.resources.podhealth import pod_issue

UID = "6f1c2a50-0000-4000-8000-000000000002"
TOLERATION = {"key": "tidings.dev/real-node", "value": "true", "effect": "NoSchedule"}


def region_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "ChatRegion",
        "metadata": {"name": "loop", "namespace": "ns", "uid": UID, "generation": 1},
        "spec": {
            "image": "localhost/tidings:abc",
            "kafka": {"bootstrapServers": "127.0.0.1:9092"},
            "cassandra": {"contactPoints": ["127.0.0.1"]},
            "redis": {"url": "redis://127.0.0.1:6390/0"},
            "s3": {"bucket": "tidings"},
            **spec,
        },
    }


def own_ports() -> dict[str, Any]:
    return {
        name: {"replicas": 1, "port": 20000 + i, "opsPort": 21000 + i}
        for i, name in enumerate(REGION_COMPONENTS)
    }


def host_region() -> ChatRegion:
    placement = {
        "hostNetwork": True,
        "nodeSelector": {"tidings.dev/node": "real"},
        "tolerations": [TOLERATION],
    }
    region = parse(region_body(pods=placement, components=own_ports()))
    assert isinstance(region, ChatRegion)
    return region


def deployments(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in children if c["kind"] == "Deployment"}


def test_each_component_listens_on_its_own_ports_on_the_node_network() -> None:
    region = host_region()
    for name, deployment in deployments(region_children(region)).items():
        component = name.removeprefix("loop-")
        i = REGION_COMPONENTS.index(component)
        template = deployment["spec"]["template"]
        spec = template["spec"]
        assert spec["hostNetwork"] is True
        assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
        assert spec["nodeSelector"] == {"tidings.dev/node": "real"}
        assert spec["tolerations"] == [TOLERATION]
        (container,) = spec["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TIDINGS_PORT"] == str(20000 + i)
        assert env["TIDINGS_OPS_PORT"] == str(21000 + i)
        assert env["TIDINGS_REUSE_PORT"] == "true"
        # Declared ports would be host ports: one pod of the component per node.
        assert "ports" not in container
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(21000 + i)
        # The old pod holds the node's ports: it goes before its successor starts.
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {
            "maxSurge": 0,
            "maxUnavailable": 1,
        }


def test_host_network_pods_probe_their_own_process_and_keep_the_timings() -> None:
    """The shared client port would answer any pod's probe: each probe runs
    ``tidings.probe`` in the container instead, with the pod network's timings."""
    pod_network = parse(region_body())
    assert isinstance(pod_network, ChatRegion)
    plain = deployments(region_children(pod_network))["loop-gateway"]
    (plain_container,) = plain["spec"]["template"]["spec"]["containers"]
    (container,) = deployments(region_children(host_region()))["loop-gateway"]["spec"]["template"][
        "spec"
    ]["containers"]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["exec"]["command"] == ["python", "-m", "tidings.probe", path]
        assert "httpGet" not in container[probe]
        assert container[probe]["timeoutSeconds"] == 5
        for timing in ("periodSeconds", "failureThreshold"):
            assert container[probe][timing] == plain_container[probe][timing]
    assert plain_container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "TIDINGS_REUSE_PORT" not in {e["name"] for e in plain_container["env"]}


def test_host_network_services_target_the_port_number() -> None:
    """No named ``http`` port on a host-network pod: the Service targets the number."""
    services = {
        c["metadata"]["name"]: c["spec"]["ports"][0]["targetPort"]
        for c in region_children(host_region())
        if c["kind"] == "Service"
    }
    assert services["loop-gateway"] == 20000 + REGION_COMPONENTS.index("gateway")
    assert services["loop-media"] == 20000 + REGION_COMPONENTS.index("media")
    pod_network = parse(region_body())
    assert isinstance(pod_network, ChatRegion)
    for child in region_children(pod_network):
        if child["kind"] == "Service":
            assert child["spec"]["ports"][0]["targetPort"] == "http"


def test_a_region_without_placement_keeps_the_pod_network_and_surges() -> None:
    region = parse(region_body())
    assert isinstance(region, ChatRegion)
    for deployment in deployments(region_children(region)).values():
        spec = deployment["spec"]["template"]["spec"]
        assert not {"hostNetwork", "dnsPolicy", "nodeSelector", "tolerations"} & set(spec)
        (container,) = spec["containers"]
        assert "TIDINGS_PORT" not in {e["name"] for e in container["env"]}
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "25%"


def test_a_push_pool_runs_where_its_region_runs_on_its_own_ports() -> None:
    pool = parse(
        {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "PushPool",
            "metadata": {"name": "loop-fcm", "namespace": "ns", "uid": UID, "generation": 1},
            "spec": {
                "region": "loop",
                "provider": "fcm",
                "credentialsSecret": {"name": "fcm", "key": "sa.json"},
                "port": 22000,
                "opsPort": 22001,
            },
        }
    )
    assert isinstance(pool, PushPool)
    (deployment,) = deployments(pool_children(pool, host_region())).values()
    spec = deployment["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["tolerations"] == [TOLERATION]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["TIDINGS_PORT"], env["TIDINGS_OPS_PORT"]) == ("22000", "22001")
    assert env["TIDINGS_REUSE_PORT"] == "true"
    assert "ports" not in container


def test_host_network_with_shared_ports_is_refused_naming_them() -> None:
    with pytest.raises(ValidationError) as refused:
        parse(region_body(pods={"hostNetwork": True}))
    text = str(refused.value)
    assert "every component needs ports of its own" in text
    assert "8080: gateway port, router port" in text


def test_a_stopped_component_holds_no_port() -> None:
    components = own_ports()
    components["analytics"] = {"replicas": 0, "port": 20000, "opsPort": 21000}
    region = parse(region_body(pods={"hostNetwork": True}, components=components))
    assert isinstance(region, ChatRegion)
    started = copy.deepcopy(components)
    started["analytics"]["replicas"] = 1
    with pytest.raises(ValidationError, match="20000: gateway port, analytics port"):
        parse(region_body(pods={"hostNetwork": True}, components=started))


def test_an_image_the_node_may_not_pull_is_a_failing_pod() -> None:
    """``imagePullPolicy: Never`` and the image is not on the node: the kubelet waits
    with ``ErrImageNeverPull`` for ever (seen on the real node)."""
    waiting = {"reason": "ErrImageNeverPull", "message": 'image "x" is not present'}
    pod = {
        "metadata": {"name": "loop-gateway-1"},
        "status": {
            "containerStatuses": [
                {"name": "gateway", "state": {"waiting": waiting}, "restartCount": 0}
            ]
        },
    }
    issue = pod_issue("gateway", pod, datetime.now(UTC))
    assert issue is not None
    assert issue.reason == "ErrImageNeverPull"
    assert 'image "x" is not present' in issue.message
