"""Failover between regions, each run by its own ``tidings-operator run --region``
process (as each region's cluster runs its own). Killing a region's operator moves
nothing (its data plane, here its Kafka, still answers: the others report it
``OperatorDown``); with two regions ``Automatic`` never acts (no majority can observe a
peer) and says so; a person's ``kubectl tidings failover`` and ``failback`` move shards.
The takeover itself, by a majority seeing a data plane down, is driven on a fake clock
in ``tests/unit/test_operator_failover_loop.py``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from operator_support import (
    OperatorProcess,
    apply,
    condition,
    eventually,
    get_json,
    install_crds,
    peer_seen,
    ready_now,
    region_manifest,
    routed,
    running_operator,
)
from servers import KubeEnv
from tidings_operator.names import shard_map_config_map

pytestmark = pytest.mark.slow

WINDOW = 5
"""Seconds of failed checks before a peer counts as failed (the least the CRD allows)."""


@dataclass
class Regions:
    kube: KubeEnv
    namespace: str
    names: list[str]
    manifests: dict[str, dict[str, Any]]
    logs: Path

    def get(self, *what: str) -> dict[str, Any] | None:
        return get_json(self.kube, "-n", self.namespace, *what)

    def operator(self, region: str) -> AbstractContextManager[OperatorProcess]:
        return running_operator(
            self.kube,
            [self.namespace],
            self.logs / f"{region}.log",
            "--region",
            region,
            "--heartbeat-interval",
            "1",
            interval=3.0,
        )

    def ready(self, region: str) -> bool:
        return ready_now(self.get("chatregion", region))

    def failover(self, region: str) -> dict[str, Any]:
        body = self.get("chatregion", region) or {}
        found: dict[str, Any] = (body.get("status") or {}).get("failover") or {}
        return found

    def peer(self, region: str, peer: str) -> dict[str, Any]:
        return peer_seen(self.get("chatregion", region), peer)

    def renewed(self, region: str) -> datetime | None:
        """When ``region``'s operator last renewed its heartbeat (its own clock)."""
        lease = self.get("lease", f"tidings-region-{region}") or {}
        stamp = (lease.get("spec") or {}).get("renewTime")
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None

    def shards_of(self, home: str) -> dict[str, tuple[str, int]]:
        """Shard name -> (owner, epoch), for the shards whose home is ``home``."""
        found = self.get("messageshards") or {}
        return {
            s["metadata"]["name"]: (s["spec"]["owner"], s["spec"]["epoch"])
            for s in found.get("items") or []
            if s["spec"]["region"] == home
        }

    def routed_by(self, region: str) -> dict[str, tuple[str, int]]:
        """Shard name -> (owner, epoch) as ``region``'s pods read their mounted shard
        map (the platform's own parser: what it would route by)."""
        return routed(self.get("configmap", shard_map_config_map(region)), region)

    def dns(self, region: str) -> dict[str, list[str]]:
        """Region -> targets of the global name, as ``kubectl get dnsendpoints`` shows
        ``region``'s DNSEndpoint."""
        found = self.get("dnsendpoint", f"{region}-gateway-dns") or {}
        return {
            e["setIdentifier"]: e["targets"]
            for e in (found.get("spec") or {}).get("endpoints") or []
            if e["dnsName"] == GLOBAL_NAME
        }

    def reasons(self, region: str) -> set[str]:
        found = self.get("events", "--field-selector", f"involvedObject.name={region}") or {}
        return {e["reason"] for e in found.get("items") or []}

    def tidings(self, *args: str, check: bool = True) -> Any:
        return self.kube.kubectl("tidings", "-n", self.namespace, *args, check=check, plugins=True)

    def start(self) -> None:
        for manifest in self.manifests.values():
            apply(self.kube, manifest)
        for region in self.names:
            eventually(lambda r=region: self.ready(r), f"ChatRegion {region} to turn Ready")
        eventually(
            lambda: all(
                self.peer(r, p).get("health") == "Healthy"
                for r in self.names
                for p in self.names
                if p != r
            ),
            "each region to see every peer healthy",
        )


def release(regions: Regions) -> None:
    """Delete the test's namespace. Each region's finalizer belongs to that region's
    operator, stopped by now: take it off, or the namespace stays Terminating."""
    for name in regions.names:
        regions.kube.kubectl(
            "-n",
            regions.namespace,
            "patch",
            "chatregion",
            name,
            "--type=merge",
            "-p",
            json.dumps({"metadata": {"finalizers": None}}),
            check=False,
        )
    regions.kube.kubectl("delete", "namespace", regions.namespace, "--wait=false", check=False)


GLOBAL_NAME = "chat.tidings.test"


def regions_of(
    count: int, kube: KubeEnv, kafka: str, cassandra: dict[str, str], logs: Path
) -> Regions:
    install_crds(kube)
    suffix = uuid.uuid4().hex[:8]
    namespace = f"fo-{suffix}"
    kube.kubectl("create", "namespace", namespace)
    names = [f"{letter}{suffix}" for letter in "abc"[:count]]
    addresses = {name: f"127.0.0.{10 + i}" for i, name in enumerate(names)}

    def gateway_of(region: str) -> str:
        return f"http://{addresses[region]}:9"  # the discard port: nothing listens

    size = 1024 // count
    manifests = {}
    for i, name in enumerate(names):
        manifests[name] = region_manifest(
            name,
            namespace,
            kafka=kafka,
            cassandra=cassandra,
            keyspace=f"fo_{name}",
            shards=2,
            slotRange={"first": i * size, "last": 1023 if i == count - 1 else (i + 1) * size - 1},
            # The data plane probed is each region's Kafka (the shared one here, which
            # stays up: a killed operator leaves it serving). No gateway runs: each
            # region's gateway URL refuses at once, and Kafka answering is enough.
            peers=[
                {"name": p, "kafkaBootstrapServers": kafka, "gatewayEndpoint": gateway_of(p)}
                for p in names
                if p != name
            ],
            failover={"policy": "Automatic", "detectionWindowSeconds": WINDOW},
            publicUrl=gateway_of(name),
            dns={"hostname": GLOBAL_NAME, "ttlSeconds": 30},
        )
    return Regions(kube, namespace, names, manifests, logs)


@pytest.fixture
def three(
    kube_env: KubeEnv, kafka_bootstrap: str, cassandra_env: dict[str, str], tmp_path: Path
) -> Iterator[Regions]:
    regions = regions_of(3, kube_env, kafka_bootstrap, cassandra_env, tmp_path)
    yield regions
    release(regions)


@pytest.fixture
def two(
    kube_env: KubeEnv, kafka_bootstrap: str, cassandra_env: dict[str, str], tmp_path: Path
) -> Iterator[Regions]:
    regions = regions_of(2, kube_env, kafka_bootstrap, cassandra_env, tmp_path)
    yield regions
    release(regions)


def kill(op: OperatorProcess) -> None:
    op.process.kill()  # SIGKILL: no goodbye, the heartbeat just stops
    op.process.wait(10)


@pytest.mark.timeout(300)
def test_a_region_whose_operator_dies_keeps_its_shards_and_status_says_why(
    three: Regions,
) -> None:
    a, b, c = three.names
    home = {f"{c}-0": (c, 1), f"{c}-1": (c, 1)}
    with ExitStack() as stack:
        stack.enter_context(three.operator(a))
        stack.enter_context(three.operator(b))
        with three.operator(c) as op_c:
            three.start()
            assert three.shards_of(c) == home
            kill(op_c)
        for judge in (a, b):
            eventually(
                lambda j=judge: three.peer(j, c).get("health") == "OperatorDown",
                f"{judge} to see {c}'s operator down",
            )
        since = datetime.fromisoformat(three.peer(a, c)["since"].replace("Z", "+00:00"))

        def three_windows_on() -> bool:  # as the operators' own clock tells
            renewed = three.renewed(a)
            return renewed is not None and (renewed - since).total_seconds() >= 3 * WINDOW

        eventually(three_windows_on, f"three detection windows of {c}'s operator down")
        assert three.shards_of(c) == home
        for judge in (a, b):
            seen = three.peer(judge, c)
            assert (seen["health"], seen["reason"]) == ("OperatorDown", "OperatorDown")
            assert "data plane reachable" in seen["message"]
            assert "moves no shards" in seen["message"]
            decision = three.failover(judge)["decision"]
            assert (decision["action"], decision["reason"]) == ("None", "OperatorDown")
            assert three.failover(judge)["majority"] == 2
            cond = condition(three.get("chatregion", judge), "PeersHealthy")
            assert cond is not None
            assert (cond["status"], cond["reason"]) == ("False", "PeerOperatorDown")
            assert "ShardTakenOver" not in three.reasons(judge)
            assert "PeerOperatorDown" in three.reasons(judge)
        assert "ShardsTakenOver" not in three.reasons(c)
        # An operator down is not a region failed: the global name keeps all three.
        everyone = {a: ["127.0.0.10"], b: ["127.0.0.11"], c: ["127.0.0.12"]}
        assert three.dns(a) == three.dns(b) == everyone


@pytest.mark.timeout(300)
def test_two_regions_never_fail_over_by_themselves_but_on_command(two: Regions) -> None:
    a, b = two.names
    with two.operator(a) as op_a, two.operator(b):
        two.start()
        for region in (a, b):
            decision = two.failover(region)["decision"]
            assert (decision["action"], decision["reason"]) == ("NoQuorum", "FailoverNoQuorum")
            assert "kubectl tidings failover" in decision["message"]
            eventually(
                lambda r=region: "FailoverNoQuorum" in two.reasons(r),
                f"an Event on {region} saying Automatic cannot act",
            )
        refused = two.tidings("failover", a, "--to", "nowhere", check=False)
        assert refused.returncode == 1
        assert "no ChatRegion nowhere" in refused.stderr
        done = two.tidings("failover", a, "--to", b)
        assert done.returncode == 0
        moved = {f"{a}-0": (b, 2), f"{a}-1": (b, 2)}
        assert two.shards_of(a) == moved
        assert "ShardMoved" in two.reasons(a)
        again = two.tidings("failover", a, "--to", b, check=False)
        assert again.returncode == 1
        assert "owns no shards" in again.stderr
        eventually(
            lambda: two.routed_by(a).items() >= moved.items(),
            f"{a}'s shard map to name {b} the owner of its shards",
        )
        eventually(
            lambda: (
                ((two.get("messageshard", f"{a}-0") or {}).get("status") or {}).get("owner") == b
            ),
            f"{b}'s operator to acknowledge the shard it took",
        )
        # The old owner cannot take a shard back without a newer epoch, nor lower it.
        refused = two.kube.kubectl(
            "-n",
            two.namespace,
            "patch",
            "messageshard",
            f"{a}-0",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"owner": a}}),
            check=False,
        )
        assert refused.returncode != 0
        assert "must bump its epoch" in refused.stderr
        preview = two.tidings("failback", a, "--dry-run")
        assert f"would move shard {a}-0: {b} -> {a} (epoch 2 -> 3)" in preview.stdout
        assert two.shards_of(a) == moved
        back = two.tidings("failback", a)
        assert f"moved shard {a}-1: {b} -> {a} (epoch 2 -> 3)" in back.stdout
        assert two.shards_of(a) == {f"{a}-0": (a, 3), f"{a}-1": (a, 3)}
        assert "EPOCH" in two.tidings("shards").stdout
        exported = op_a.metrics().splitlines()
        assert f'tidings_operator_peer_health{{health="Healthy",peer="{b}",region="{a}"}} 1.0' in (
            exported
        )
