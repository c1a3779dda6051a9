"""The Tidings image as a real pod: on the kubelet of ``scripts/kube node up`` (containerd
and runc beside the kwok nodes), hardened by the operator's own pod builders, with the
host's network (this machine routes only loopback), reached from the test over loopback.

Every wait is on a positive signal (a condition, an HTTP answer) with a bound."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from operator_support import free_port
from servers import KubeEnv, RealNode
from tidings_operator.models.base import ResourceRequirements
from tidings_operator.resources import pods

pytestmark = pytest.mark.slow

READY_TIMEOUT = 90
"""Seconds from ``kubectl apply`` to Ready: sandbox, container start, ``tidings up``
starting its embedded engines, then the first readiness probe."""


def up_pod(image: str, node: RealNode, port: int, name: str) -> dict[str, Any]:
    """``tidings up`` (the image's own command) as the operator would run a platform
    process (uid 10001, read-only root, no capabilities, RuntimeDefault seccomp, emptyDirs
    for the data directory and /tmp), on the host network at ``port``, placed on the real
    node by its label and taint."""
    main = pods.container(
        "tidings",
        image=image,
        pull_policy="Never",
        env_from_config_map="unused",
        env=[
            {"name": "TIDINGS_HOST", "value": "127.0.0.1"},
            {"name": "TIDINGS_PORT", "value": str(port)},
            # The host's network: the operations port must be free on the host too.
            {"name": "TIDINGS_OPS_PORT", "value": str(free_port())},
        ],
        resources=ResourceRequirements(),
    )
    del main["envFrom"], main["startupProbe"], main["livenessProbe"]
    main["args"] = ["up"]
    # With the host's network the container port is the host's port.
    main["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    main["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 1,
        "failureThreshold": 3,
    }
    template = pods.pod_template(
        labels={"app": name}, annotations={}, service_account="default", container=main
    )
    spec = template["spec"]
    spec |= {
        "hostNetwork": True,
        "dnsPolicy": "Default",
        "nodeSelector": node.node_selector,
        "tolerations": [node.toleration],
        "terminationGracePeriodSeconds": 10,
    }
    metadata = {"name": name, **template["metadata"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_tidings_up_runs_as_a_real_pod_on_the_real_node(
    kube_env: KubeEnv, kube_namespace: str, real_node: RealNode, tidings_image: str
) -> None:
    """The pod is scheduled on the real node, passes its readiness probe, answers the
    test over loopback, runs as 10001 on a read-only root, logs through ``kubectl logs``,
    and is gone once deleted (its container stopped by the kubelet)."""
    ns, name, port = kube_namespace, "tidings-up", free_port()
    manifest = up_pod(tidings_image, real_node, port, name)
    kube_env.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    waited = kube_env.kubectl(
        "wait",
        "-n",
        ns,
        f"pod/{name}",
        "--for=condition=Ready",
        f"--timeout={READY_TIMEOUT}s",
        timeout=READY_TIMEOUT + 10,
        check=False,
    )
    if waited.returncode != 0:
        described = kube_env.kubectl("describe", "-n", ns, f"pod/{name}", check=False)
        pytest.fail(f"pod not Ready within {READY_TIMEOUT}s:\n{described.stdout}")

    pod = json.loads(kube_env.kubectl("get", "-n", ns, f"pod/{name}", "-o", "json").stdout)
    assert pod["spec"]["nodeName"] == real_node.name
    assert pod["status"]["podIP"] == "127.0.0.1"
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"]
    assert status["restartCount"] == 0
    assert status["containerID"].startswith("containerd://")

    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200

    def exec_(*cmd: str) -> tuple[str, str]:
        """The command's output and errors, apart: kubectl writes its own client-side
        lines to stderr too (one run got "Unknown stream id 1, discarding message")."""
        done = kube_env.kubectl("exec", "-n", ns, name, "--", *cmd, check=False)
        return done.stdout.strip(), done.stderr

    assert exec_("id", "-u")[0] == "10001"
    assert "Read-only file system" in exec_("touch", "/opt/tidings/x")[1]
    assert exec_("grep", "CapEff", "/proc/self/status")[0].endswith("0000000000000000")

    logs = kube_env.kubectl("logs", "-n", ns, name).stdout
    assert str(port) in logs, logs

    kube_env.kubectl("delete", "-n", ns, f"pod/{name}", "--wait=true", "--timeout=60s", timeout=70)
    assert kube_env.kubectl("get", "-n", ns, "pods", "-o", "name").stdout.strip() == ""


def test_a_pod_without_the_toleration_never_lands_on_the_real_node(
    kube_env: KubeEnv, kube_namespace: str, real_node: RealNode, tidings_image: str
) -> None:
    """The real node's taint keeps other pods off it: one that only selects it stays
    unschedulable."""
    manifest = up_pod(tidings_image, real_node, free_port(), "untolerated")
    del manifest["spec"]["tolerations"]
    kube_env.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(manifest))
    kube_env.kubectl(
        "wait",
        "-n",
        kube_namespace,
        "pod/untolerated",
        "--for=jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}=Unschedulable",
        "--timeout=60s",
        timeout=70,
    )
    pod = json.loads(
        kube_env.kubectl("get", "-n", kube_namespace, "pod/untolerated", "-o", "json").stdout
    )
    assert "nodeName" not in pod["spec"]
    (scheduled,) = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert "untolerated taint" in scheduled["message"], scheduled
