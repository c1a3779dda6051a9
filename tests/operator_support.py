"""Running the real ``tidings-operator`` against the loopback control plane, and the
manifests and polling the operator tests share."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from servers import ROOT, KubeEnv
from tidings.core.shardmap import SHARD_MAP_FILE_NAME, parse_shard_map

OPERATOR = str(Path(sys.executable).with_name("tidings-operator"))
CRDS = ROOT / "crds"
THIRD_PARTY_CRDS = ROOT / "tests" / "crds"
"""Kinds of other projects the operator writes (ExternalDNS's DNSEndpoint)."""
T = TypeVar("T")

WAIT = 120.0
"""Upper bound for the operator and the control plane to converge (a few seconds
normally; generous for a loaded 2-core machine)."""


def eventually(check: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """Poll ``check`` until it returns something other than None/False; fail after
    ``timeout`` seconds with ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last is not None and last is not False:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(0.5)


def get_json(kube: KubeEnv, *args: str) -> dict[str, Any] | None:
    """``kubectl get ARGS -o json``, or None when the object does not exist."""
    done = kube.kubectl("get", *args, "-o", "json", check=False)
    if done.returncode != 0:
        if "NotFound" in done.stderr or "not found" in done.stderr:
            return None
        raise AssertionError(f"kubectl get {' '.join(args)} failed: {done.stderr}")
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def peer_seen(region: dict[str, Any] | None, peer: str) -> dict[str, Any]:
    """How a ChatRegion's failover loop last judged ``peer`` (``status.failover.peers``);
    empty when it has not yet."""
    failover = ((region or {}).get("status") or {}).get("failover") or {}
    found: dict[str, Any] = next((p for p in failover.get("peers") or [] if p["name"] == peer), {})
    return found


def routed(config_map: dict[str, Any] | None, region: str) -> dict[str, tuple[str, int]]:
    """Shard name -> (owner, epoch) in a region's shard map ConfigMap, as its pods read
    the mounted file (the platform's own parser: what it would route by)."""
    text = ((config_map or {}).get("data") or {}).get(SHARD_MAP_FILE_NAME)
    if text is None:
        return {}
    return {s.name: (s.owner_region, s.epoch) for s in parse_shard_map(text, region).shards}


def apply(
    kube: KubeEnv, *objects: dict[str, Any], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``kubectl apply`` (client-side, as a person does) of the objects as YAML."""
    return kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=check)


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            found: dict[str, Any] = cond
            return found
    return None


def ready_now(obj: dict[str, Any] | None) -> bool:
    """``Ready=True``, written for the object's current generation."""
    cond = condition(obj, "Ready")
    generation = ((obj or {}).get("metadata") or {}).get("generation")
    return bool(cond and cond["status"] == "True" and cond.get("observedGeneration") == generation)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def install_crds(kube: KubeEnv) -> None:
    for folder in (CRDS, THIRD_PARTY_CRDS):
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(folder))
    for path in sorted([*CRDS.glob("*.yaml"), *THIRD_PARTY_CRDS.glob("*.yaml")]):
        kube.kubectl("wait", "--for=condition=Established", "-f", str(path), "--timeout=60s")


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    health_port: int
    metrics_port: int

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """Resident memory of the operator process."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def running_operator(
    kube: KubeEnv,
    namespaces: list[str],
    log: Path,
    *extra: str,
    interval: float = 5.0,
    source: Path | None = None,
) -> Iterator[OperatorProcess]:
    """``tidings-operator run`` watching ``namespaces``, alive until its health endpoint
    answers; stopped (SIGTERM) afterwards. Its log goes to ``log``. ``source``: a source
    tree (``operator/`` and ``platform/`` inside, e.g. an earlier commit's) to run
    instead of this one, on the same virtualenv."""
    health, metrics = free_port(), free_port()
    env = dict(os.environ)
    command = [OPERATOR]
    if source is not None:
        command = [sys.executable, "-m", "tidings_operator.main"]
        env["PYTHONPATH"] = os.pathsep.join(str(source / d) for d in ("operator", "platform"))
    args = [
        *command,
        "run",
        *(f"--namespace={ns}" for ns in namespaces),
        "--kubeconfig",
        str(kube.kubeconfig),
        "--health-port",
        str(health),
        "--metrics-port",
        str(metrics),
        "--reconcile-interval",
        str(interval),
        "--watch-timeout",
        "60",
        *extra,
    ]
    if "--peering" not in extra:
        args.append("--standalone")
    with log.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    op = OperatorProcess(process, log, health, metrics)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the operator exited with {process.returncode}:\n{op.log_text()}")
            try:
                return httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=2).is_success
            except httpx.HTTPError:
                return False

        eventually(healthy, "the operator's health endpoint")
        yield op
    finally:
        op.stop()


def region_manifest(
    name: str,
    namespace: str,
    *,
    kafka: str,
    cassandra: dict[str, str],
    keyspace: str,
    partitions: int = 2,
    deletion_policy: str = "Retain",
    **spec: Any,
) -> dict[str, Any]:
    """A ChatRegion on the real Kafka and Cassandra of the test session, small enough
    for this machine (one replica per component, replication factor 1)."""
    dc = cassandra["TIDINGS_CASSANDRA_LOCAL_DC"]
    body: dict[str, Any] = {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "ChatRegion",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "tidings:test",
            "devMode": True,
            "components": {"gateway": {"replicas": 1}},
            "kafka": {
                "bootstrapServers": kafka,
                "partitions": partitions,
                "replicationFactor": 1,
            },
            "cassandra": {
                "contactPoints": cassandra["TIDINGS_CASSANDRA_CONTACT_POINTS"].split(","),
                "port": int(cassandra["TIDINGS_CASSANDRA_PORT"]),
                "datacenter": dc,
                "keyspace": keyspace,
                "replication": {dc: 1},
            },
            "redis": {"url": "redis://127.0.0.1:6390/0"},
            "s3": {"bucket": "tidings-media", "endpoint": "http://127.0.0.1:9000"},
            "shards": 4,
            "deletionPolicy": deletion_policy,
            **spec,
        },
    }
    return body
