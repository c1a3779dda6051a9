"""The loopback Kubernetes control plane does what the operator's tests rely on: Deployments
roll out to Ready pods on kwok's fake nodes, owner references are garbage-collected,
namespaces finish deleting, and RBAC decides what a service account may do."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from operator_support import eventually as _eventually
from servers import KubeEnv

pytestmark = pytest.mark.slow

T = TypeVar("T")

WAIT = 90.0
"""Upper bound for the control plane to converge (typically a few seconds)."""


def eventually(check: Callable[[], T | None], what: str) -> T:
    """The shared poll, bounded by this module's ``WAIT``."""
    return _eventually(check, what, timeout=WAIT)


def get_json(kube: KubeEnv, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kube.kubectl("get", *args, "-o", "json").stdout)
    return out


def exists(kube: KubeEnv, *args: str) -> bool:
    done = kube.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    assert done.returncode == 0, done.stderr
    return bool(done.stdout.strip())


def deployment(name: str, replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    # kwok never pulls nor runs the image: the pod only has to be scheduled.
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.invalid/tidings/app:1",
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            }
                        ]
                    },
                },
            },
        }
    )


def test_deployment_pods_run_on_fake_nodes(kube_env: KubeEnv, kube_namespace: str) -> None:
    ns = kube_namespace
    kube_env.kubectl("apply", "-n", ns, "-f", "-", input=deployment("web", 2))

    def ready() -> int | None:
        status = get_json(kube_env, "deployment", "web", "-n", ns).get("status", {})
        return status.get("readyReplicas") if status.get("readyReplicas") == 2 else None

    assert eventually(ready, "deployment web readyReplicas=2") == 2

    pods = get_json(kube_env, "pods", "-n", ns, "-l", "app=web")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"].startswith("kwok-node-")
        assert pod["status"].get("podIP")
        # Deployment -> ReplicaSet -> Pod, linked by owner references.
        (owner,) = pod["metadata"]["ownerReferences"]
        assert owner["kind"] == "ReplicaSet"


def test_deleting_an_owner_collects_its_dependents(kube_env: KubeEnv, kube_namespace: str) -> None:
    ns = kube_namespace
    kube_env.kubectl("create", "configmap", "owner", "-n", ns, "--from-literal=k=v")
    uid = get_json(kube_env, "configmap", "owner", "-n", ns)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
        "data": {"k": "v"},
    }
    kube_env.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(child))
    bystander = {**child, "metadata": {"name": "bystander"}}
    kube_env.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(bystander))

    kube_env.kubectl("delete", "configmap", "owner", "-n", ns)

    eventually(lambda: not exists(kube_env, "configmap", "child", "-n", ns), "child collected")
    assert exists(kube_env, "configmap", "bystander", "-n", ns)


def test_namespace_deletion_completes(kube_env: KubeEnv) -> None:
    ns = f"t-{uuid.uuid4().hex[:12]}"
    kube_env.kubectl("create", "namespace", ns)
    try:
        kube_env.kubectl("create", "configmap", "data", "-n", ns, "--from-literal=k=v")
        kube_env.kubectl("apply", "-n", ns, "-f", "-", input=deployment("app", 1))
        eventually(
            lambda: (
                get_json(kube_env, "deployment", "app", "-n", ns)
                .get("status", {})
                .get("readyReplicas")
            ),
            "deployment app ready",
        )

        kube_env.kubectl("delete", "namespace", ns, "--wait=false")

        # Its content goes first (pods too, which kwok lets go), then the namespace itself.
        eventually(lambda: not exists(kube_env, "namespace", ns), f"namespace {ns} deleted")
        assert not exists(kube_env, "pods", "-A", "--field-selector", f"metadata.namespace={ns}")
    finally:
        kube_env.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


def test_rbac_decides_what_a_service_account_may_do(kube_env: KubeEnv, kube_namespace: str) -> None:
    ns = kube_namespace
    kube_env.kubectl("create", "serviceaccount", "reader", "-n", ns)
    kube_env.kubectl(
        "create", "role", "read-configmaps", "-n", ns, "--verb=get,list,watch",
        "--resource=configmaps",
    )  # fmt: skip
    kube_env.kubectl(
        "create", "rolebinding", "reader", "-n", ns, "--role=read-configmaps",
        f"--serviceaccount={ns}:reader",
    )  # fmt: skip
    who = f"--as=system:serviceaccount:{ns}:reader"

    def can_i(*args: str) -> str:
        done = kube_env.kubectl("auth", "can-i", *args, who, check=False)
        # Exit 0 = yes, 1 = no; anything else is an error.
        assert done.returncode in (0, 1), done.stderr
        return done.stdout.strip()

    assert can_i("list", "configmaps", "-n", ns) == "yes"
    assert can_i("get", "configmaps/anything", "-n", ns) == "yes"
    assert can_i("delete", "configmaps", "-n", ns) == "no"
    assert can_i("list", "secrets", "-n", ns) == "no"
    assert can_i("list", "configmaps", "-n", "default") == "no"
    assert can_i("list", "configmaps", "--all-namespaces") == "no"


def test_helm_reaches_the_cluster(kube_env: KubeEnv) -> None:
    done = subprocess.run(
        [str(kube_env.helm), "--kubeconfig", str(kube_env.kubeconfig), "list", "-A", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)
