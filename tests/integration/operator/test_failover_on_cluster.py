"""Failover between two regions, each run by its own ``tidings-operator run --region``
process (as each region's cluster runs its own): killing one region's operator lets its
heartbeat expire, and the other fences and takes over its shards; failback is a person's
``kubectl tidings failback``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
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
    ready_now,
    region_manifest,
    running_operator,
)
from servers import KubeEnv
from tidings.core.shardmap import SHARD_MAP_FILE_NAME, parse_shard_map
from tidings_operator.names import shard_map_config_map

pytestmark = pytest.mark.slow

WINDOW = 5
"""Seconds of failed checks before a peer counts as failed (the least the CRD allows)."""


@dataclass
class Pair:
    kube: KubeEnv
    namespace: str
    a: str
    b: str
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

    def peer_health(self, region: str, peer: str) -> str | None:
        body = self.get("chatregion", region) or {}
        peers = (body.get("status") or {}).get("peers") or []
        return next((p["health"] for p in peers if p["name"] == peer), None)

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
        cm = self.get("configmap", shard_map_config_map(region)) or {}
        text = (cm.get("data") or {}).get(SHARD_MAP_FILE_NAME)
        if text is None:
            return {}
        return {s.name: (s.owner_region, s.epoch) for s in parse_shard_map(text, region).shards}

    def reasons(self, region: str) -> set[str]:
        found = self.get("events", "--field-selector", f"involvedObject.name={region}") or {}
        return {e["reason"] for e in found.get("items") or []}

    def tidings(self, *args: str, check: bool = True) -> Any:
        return self.kube.kubectl("tidings", "-n", self.namespace, *args, check=check, plugins=True)


@pytest.fixture
def pair(
    kube_env: KubeEnv,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Pair]:
    install_crds(kube_env)
    suffix = uuid.uuid4().hex[:8]
    namespace = f"fo-{suffix}"
    kube_env.kubectl("create", "namespace", namespace)
    a, b = f"a{suffix}", f"b{suffix}"
    manifests = {}
    for name, peer, slots in ((a, b, (0, 511)), (b, a, (512, 1023))):
        manifests[name] = region_manifest(
            name,
            namespace,
            kafka=kafka_bootstrap,
            cassandra=cassandra_env,
            keyspace=f"fo_{name}",
            shards=2,
            slotRange={"first": slots[0], "last": slots[1]},
            peers=[{"name": peer}],
            failover={"policy": "Automatic", "detectionWindowSeconds": WINDOW},
        )
    yield Pair(kube_env, namespace, a, b, manifests, tmp_path)
    kube_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def start(pair: Pair) -> None:
    for manifest in pair.manifests.values():
        apply(pair.kube, manifest)
    for region in (pair.a, pair.b):
        eventually(lambda r=region: pair.ready(r), f"ChatRegion {region} to turn Ready")
    eventually(
        lambda: (
            pair.peer_health(pair.a, pair.b) == "Healthy"
            and pair.peer_health(pair.b, pair.a) == "Healthy"
        ),
        "each region to see the other's heartbeat",
    )


def kill(op: OperatorProcess) -> None:
    op.process.kill()  # SIGKILL: no goodbye, the heartbeat just stops
    op.process.wait(10)


@pytest.mark.timeout(420)
def test_a_region_whose_operator_dies_is_fenced_and_its_shards_taken_over(pair: Pair) -> None:
    with pair.operator(pair.a) as op_a:
        with pair.operator(pair.b) as op_b:
            start(pair)
            home = {f"{pair.b}-0": (pair.b, 1), f"{pair.b}-1": (pair.b, 1)}
            assert pair.shards_of(pair.b) == home
            # Each region waits for its own operator only when deleted: a failed
            # region's operator holds nothing of its peers'.
            for region in (pair.a, pair.b):
                finalizers = (pair.get("chatregion", region) or {})["metadata"]["finalizers"]
                assert finalizers == [f"tidings.dev/finalizer-{region}"]
            kill(op_b)

        moved = {f"{pair.b}-0": (pair.a, 2), f"{pair.b}-1": (pair.a, 2)}
        eventually(
            lambda: pair.shards_of(pair.b) == moved,
            f"{pair.a} to take over {pair.b}'s shards with a bumped epoch",
        )
        eventually(
            lambda: pair.peer_health(pair.a, pair.b) == "Failed",
            f"{pair.a}'s status to report {pair.b} failed",  # written after the moves
        )
        body = pair.get("chatregion", pair.a) or {}
        peers_cond = condition(body, "PeersHealthy")
        assert peers_cond is not None
        assert (peers_cond["status"], peers_cond["reason"]) == ("False", "PeerFailed")
        assert {"PeerSuspect", "PeerFailed", "ShardTakenOver"} <= pair.reasons(pair.a)
        assert "ShardsTakenOver" in pair.reasons(pair.b)
        # What the peer and failover alerts read (labels in the exposition's sorted order).
        exported = op_a.metrics().splitlines()
        for health, value in (("Failed", 1.0), ("Suspect", 0.0), ("Healthy", 0.0)):
            assert (
                f'tidings_operator_peer_health{{health="{health}",peer="{pair.b}",'
                f'region="{pair.a}"}} {value}'
            ) in exported
        assert 'tidings_operator_shard_moves_total{trigger="automatic"} 2.0' in exported
        assert pair.shards_of(pair.a) == {f"{pair.a}-0": (pair.a, 1), f"{pair.a}-1": (pair.a, 1)}

        eventually(
            lambda: pair.routed_by(pair.a).items() >= moved.items(),
            f"{pair.a}'s shard map to route {pair.b}'s users to {pair.a}",
        )
        eventually(
            lambda: (
                ((pair.get("messageshard", f"{pair.b}-0") or {}).get("status") or {}).get("owner")
                == pair.a
            ),
            f"{pair.a}'s operator to acknowledge the shard it took",
        )

        # The old owner cannot take a shard back without a newer epoch, nor lower it.
        refused = pair.kube.kubectl(
            "-n",
            pair.namespace,
            "patch",
            "messageshard",
            f"{pair.b}-0",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"owner": pair.b}}),
            check=False,
        )
        assert refused.returncode != 0
        assert "must bump its epoch" in refused.stderr

        # The region comes back: healthy again, but its shards stay where they are.
        with pair.operator(pair.b):
            eventually(
                lambda: pair.peer_health(pair.a, pair.b) == "Healthy",
                f"{pair.a} to see {pair.b} healthy again",
            )
            eventually(lambda: pair.ready(pair.b), f"{pair.b} to be Ready again")
            # Its own pods now read the move too: what its delivery workers still hold
            # for those users is forwarded to the owner, not delivered by them.
            eventually(
                lambda: pair.routed_by(pair.b).items() >= moved.items(),
                f"{pair.b}'s shard map to name {pair.a} the owner of its shards",
            )
            assert pair.shards_of(pair.b) == moved  # failback is never automatic

            preview = pair.tidings("failback", pair.b, "--dry-run")
            assert f"would move shard {pair.b}-0: {pair.a} -> {pair.b} (epoch 2 -> 3)" in (
                preview.stdout
            )
            assert pair.shards_of(pair.b) == moved
            done = pair.tidings("failback", pair.b)
            assert f"moved shard {pair.b}-1: {pair.a} -> {pair.b} (epoch 2 -> 3)" in done.stdout
            assert pair.shards_of(pair.b) == {
                f"{pair.b}-0": (pair.b, 3),
                f"{pair.b}-1": (pair.b, 3),
            }
            listing = pair.tidings("shards").stdout
            assert f"{pair.b}-0" in listing
            assert "EPOCH" in listing


@pytest.mark.timeout(300)
def test_kubectl_tidings_failover_moves_a_healthy_regions_shards_on_command(pair: Pair) -> None:
    for manifest in pair.manifests.values():
        manifest["spec"]["failover"]["policy"] = "Manual"
    with pair.operator(pair.a), pair.operator(pair.b):
        start(pair)
        refused = pair.tidings("failover", pair.a, "--to", "nowhere", check=False)
        assert refused.returncode == 1
        assert "no ChatRegion nowhere" in refused.stderr
        done = pair.tidings("failover", pair.a, "--to", pair.b)
        assert done.returncode == 0
        assert pair.shards_of(pair.a) == {f"{pair.a}-0": (pair.b, 2), f"{pair.a}-1": (pair.b, 2)}
        assert "ShardMoved" in pair.reasons(pair.a)
        again = pair.tidings("failover", pair.a, "--to", pair.b, check=False)
        assert again.returncode == 1
        assert "owns no shards" in again.stderr
