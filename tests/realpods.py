"""A Tidings region made of real pods: the chart's operator and the ChatRegion's
components as containers on the real node of ``scripts/kube node up``, on the host's
network (this machine routes only loopback), reached by the tests over loopback.

Shared by the real-pod tests: the Helm release, the ChatRegion body with a port pair per
component, and the ways a test looks at a real pod (its data directory on the host, its
memory, its container killed through containerd)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from harness import Gateway
from helm_support import CHART, CHART_CRDS, Helm
from operator_support import apply, eventually, free_port, get_json, ready_now, region_manifest
from providers.fcm_server import FakeFcm
from servers import KubeEnv, RealNode
from tidings.engines.embedded.otp import latest_code
from tidings.probe import OPS_PORT_FILE
from tidings_operator.names import COMPONENT_LABEL, REGION_LABEL, component_name

COMPONENTS = ("gateway", "router", "media", "presence", "delivery", "analytics")

READY_TIMEOUT = 300.0
"""Seconds from ``kubectl apply`` to a Ready region: six pods, each starting a Python
process that connects to Kafka, Cassandra, Redis and S3, on two shared cores."""


@dataclass(frozen=True)
class Ports:
    """The client and operations port of each component (each needs its own on the
    host's network)."""

    client: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)

    @classmethod
    def free(cls, names: tuple[str, ...]) -> Ports:
        return cls({n: free_port() for n in names}, {n: free_port() for n in names})


def placement(node: RealNode) -> dict[str, Any]:
    """The ChatRegion's (and the chart's) way onto the real node."""
    return {
        "hostNetwork": True,
        "nodeSelector": node.node_selector,
        "tolerations": [node.toleration],
    }


def image_values(image: str) -> dict[str, Any]:
    repository, _, tag = image.rpartition(":")
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


def api_server_env(kube: KubeEnv) -> list[dict[str, str]]:
    """The in-cluster client's address of the API server: the ``kubernetes`` Service's
    cluster IP is routed nowhere here (no kube-proxy), its loopback address is."""
    config = yaml.safe_load(kube.kubeconfig.read_text())
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    return [
        {"name": "KUBERNETES_SERVICE_HOST", "value": server.hostname or "127.0.0.1"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(server.port or 443)},
    ]


def service_account_token() -> dict[str, Any]:
    """Chart values mounting the pod's service account token where in-cluster clients
    read it: the loopback control plane runs without the ServiceAccount admission plugin
    (as envtest does), which would otherwise add exactly this volume."""
    volume = {
        "name": "kube-api-access",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                                            "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ],
        },
    }  # fmt: skip
    mount = {
        "name": "kube-api-access",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    return {"extraVolumes": [volume], "extraVolumeMounts": [mount]}


@dataclass
class SharedGateway(Gateway):
    """The gateway port that several pods share: a one-time code is logged by the pod
    whose process served the request, so it is looked for in each pod's data dir."""

    data_dirs: tuple[Path, ...] = ()

    def code_for(self, phone: str) -> str:
        for data_dir in self.data_dirs:
            if (code := latest_code(data_dir / "otp-outbox.jsonl", phone)) is not None:
                return code
        raise AssertionError(f"no code logged for {phone} in {self.data_dirs}")


@dataclass
class RealRegion:
    kube: KubeEnv
    node: RealNode
    namespace: str
    name: str
    image: str
    ports: Ports
    ready_seconds: float = 0.0
    """From ``kubectl apply`` of the ChatRegion to its Ready condition."""
    operator_pod: str = ""
    """The name of the chart's operator pod."""

    @property
    def gateway(self) -> Gateway:
        return Gateway(f"http://127.0.0.1:{self.ports.client['gateway']}", self.data_dir("gateway"))

    def get(self, *what: str) -> dict[str, Any] | None:
        return get_json(self.kube, "-n", self.namespace, *what)

    def body(self) -> dict[str, Any]:
        found = self.get("chatregion", self.name)
        assert found is not None
        return found

    def pods(self, component: str) -> list[dict[str, Any]]:
        selector = f"{REGION_LABEL}={self.name},{COMPONENT_LABEL}={component}"
        found = self.get("pods", "-l", selector)
        items: list[dict[str, Any]] = (found or {}).get("items", [])
        return [p for p in items if "deletionTimestamp" not in p["metadata"]]

    def pod(self, component: str) -> dict[str, Any]:
        (pod,) = self.pods(component)
        return pod

    def data_dir(self, component: str) -> Path:
        """The pod's data directory (an emptyDir) as the host sees it: where a dev-mode
        gateway logs the one-time codes."""
        return self.pod_data_dir(self.pod(component))

    def pod_data_dir(self, pod: dict[str, Any]) -> Path:
        uid = str(pod["metadata"]["uid"])
        pods = self.kube.kubeconfig.parent / "node" / "kubelet" / "pods"
        return pods / uid / "volumes" / "kubernetes.io~empty-dir" / "data"

    def pod_ops_url(self, pod: dict[str, Any]) -> str:
        """Where this pod's own process serves ``/metrics``: pods of a component on the
        node share the client port, each writes its operations port to its data dir."""
        port = int((self.pod_data_dir(pod) / OPS_PORT_FILE).read_text())
        return f"http://127.0.0.1:{port}"

    def rss_kib(self, component: str) -> int:
        """VmRSS of the container's process (PID 1: ``tidings serve``, no shell)."""
        return self.pod_rss_kib(self.pod(component)["metadata"]["name"])

    def pod_rss_kib(self, name: str) -> int:
        done = self.kube.kubectl("exec", "-n", self.namespace, name, "--", "cat", "/proc/1/status")
        (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("VmRSS:")]
        return int(line.split()[1])

    def kill_container(self, component: str) -> int:
        """SIGKILL the component's container through containerd; returns the restart
        count it had."""
        pod = self.pod(component)
        (status,) = pod["status"]["containerStatuses"]
        container_id = status["containerID"].removeprefix("containerd://")
        socket = self.kube.kubeconfig.parent / "node" / "containerd" / "containerd.sock"
        subprocess.run(
            ["ctr", "--address", str(socket), "-n", "k8s.io", "task", "kill", "-s", "SIGKILL",
             container_id],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        restarts: int = status["restartCount"]
        return restarts

    def wait_restarted(self, component: str, after: int, timeout: float = 180.0) -> None:
        """Until the component's container has restarted and is Ready again."""

        def back() -> bool:
            (pod,) = self.pods(component)
            (status,) = pod["status"].get("containerStatuses") or [{}]
            return bool(status.get("restartCount", 0) > after and status.get("ready"))

        eventually(back, f"{component}'s container restarted and Ready", timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            return ready_now(self.get("chatregion", self.name))

        eventually(ready, f"ChatRegion {self.name} Ready (status: {self.status_text()})", timeout)

    def status_text(self) -> str:
        found = self.get("chatregion", self.name) or {}
        return json.dumps(found.get("status", {}))


def region_body(
    region: RealRegion, kafka: str, cassandra: dict[str, str], s3: dict[str, str]
) -> dict[str, Any]:
    components: dict[str, Any] = {
        name: {
            "replicas": 1,
            "port": region.ports.client[name],
            "opsPort": region.ports.ops[name],
        }
        for name in COMPONENTS
    }
    return region_manifest(
        region.name,
        region.namespace,
        kafka=kafka,
        cassandra=cassandra,
        keyspace=f"rp_{uuid.uuid4().hex[:10]}",
        deletion_policy="Delete",
        image=region.image,
        imagePullPolicy="Never",
        pods=placement(region.node),
        components=components,
        redis={"url": "redis://127.0.0.1:6390/0"},
        s3={
            "bucket": s3["TIDINGS_S3_BUCKET"],
            "endpoint": s3["TIDINGS_S3_ENDPOINT"],
            "credentialsSecret": {"name": "s3-credentials"},
        },
    )


@contextmanager
def install_operator(
    helm: Helm, namespace: str, image: str, node: RealNode
) -> Iterator[dict[str, Any]]:
    """``helm install`` of the chart, its operator a real pod on the real node; yields the
    pod once Ready, uninstalls afterwards."""
    kube = helm.kube
    # helm installs CRDs only when absent: the models' current ones first.
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))
    values = {
        "image": image_values(image),
        "watchNamespaces": [namespace],
        "peering": {"name": "tidings-operator", "standalone": True},
        "healthPort": free_port(),
        "metricsPort": free_port(),
        "extraEnv": api_server_env(kube),
        **service_account_token(),
        **placement(node),
    }
    release = f"op-{uuid.uuid4().hex[:6]}"
    helm.run(
        "install", release, str(CHART), "--namespace", namespace,
        "--values", helm.values_file(values),
    )  # fmt: skip
    try:
        selector = f"app.kubernetes.io/instance={release}"
        waited = kube.kubectl(
            "wait", "-n", namespace, "pod", "-l", selector, "--for=condition=Ready",
            "--timeout=180s", timeout=190, check=False,
        )  # fmt: skip
        if waited.returncode != 0:
            described = kube.kubectl("describe", "-n", namespace, "pod", "-l", selector)
            logs = kube.kubectl("logs", "-n", namespace, "-l", selector, "--tail=40", check=False)
            raise AssertionError(
                f"operator pod not Ready:\n{described.stdout}\nlogs:\n{logs.stdout}{logs.stderr}"
            )
        found = get_json(kube, "-n", namespace, "pods", "-l", selector)
        (pod,) = (found or {})["items"]
        yield pod
    finally:
        helm.run("uninstall", release, "--namespace", namespace, "--wait=false", check=False)


def create_s3_secret(kube: KubeEnv, namespace: str, s3: dict[str, str]) -> None:
    kube.kubectl(
        "-n", namespace, "create", "secret", "generic", "s3-credentials",
        f"--from-literal=accessKey={s3['TIDINGS_S3_ACCESS_KEY']}",
        f"--from-literal=secretKey={s3['TIDINGS_S3_SECRET_KEY']}",
    )  # fmt: skip


def deployment_name(region: RealRegion, component: str) -> str:
    return component_name(region.name, component)


def elapsed_since(start: float) -> float:
    return round(time.monotonic() - start, 1)


def run_fcm_pool(region: RealRegion, fcm: FakeFcm, ports: Ports) -> None:
    """An FCM PushPool of the region pushing to the local FCM server (a fresh service
    account and the server's CA in Secrets), on ``ports``; returns once it is Ready."""
    assert fcm.ca_file is not None
    kube, ns = region.kube, region.namespace
    kube.kubectl(
        "-n", ns, "create", "secret", "generic", "fcm-credentials",
        f"--from-literal=service-account.json={json.dumps(fcm.new_account())}",
        f"--from-file=ca.pem={fcm.ca_file}",
    )  # fmt: skip
    name = f"{region.name}-fcm"
    pool = {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "PushPool",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "region": region.name,
            "provider": "fcm",
            "credentialsSecret": {"name": "fcm-credentials", "key": "service-account.json"},
            "fcm": {
                "endpoint": fcm.url,
                "tokenUri": fcm.token_uri,
                "caSecret": {"name": "fcm-credentials", "key": "ca.pem"},
            },
            "backoffBaseSeconds": 0.05,
            "port": ports.client["push"],
            "opsPort": ports.ops["push"],
        },
    }
    apply(kube, pool)

    def pool_ready() -> bool:
        return ready_now(region.get("pushpool", name))

    eventually(pool_ready, f"PushPool {name} Ready", READY_TIMEOUT)
