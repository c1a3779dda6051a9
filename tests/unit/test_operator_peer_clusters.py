"""Regions in clusters of their own: each region's failover loop reads its peers' Leases
(their heartbeats and what they see) through the peers' own API servers, from the
kubeconfig Secrets ``spec.peers`` names. A peer whose operator stops is OperatorDown; a
peer lost whole (API server and data plane) is Failed by the two others; a Secret that
is missing or not a kubeconfig is named in the status."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import yaml
from kubernetes import client as kclient

from fake_kube import FakeClock, FakeKube, region_body
from tidings_operator.failover_loop import FailoverLoop
from tidings_operator.kube import Kube
from tidings_operator.models import ChatRegion, MessageShard
from tidings_operator.peer_clusters import PeerClusters
from tidings_operator.shard_merge import merge_shards
from tidings_operator.workqueue import Key

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
WINDOW = 30
TICK = 5
NAMES = ["us", "eu", "ap"]


def kubeconfig_secret(peer: str) -> dict[str, Any]:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": peer, "cluster": {"server": f"https://{peer}.cluster.test"}}],
        "users": [{"name": "reader", "user": {"token": f"token-for-{peer}"}}],
        "contexts": [{"name": peer, "context": {"cluster": peer, "user": "reader"}}],
        "current-context": peer,
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{peer}-kubeconfig", "namespace": "ns"},
        "data": {"kubeconfig": base64.b64encode(yaml.safe_dump(document).encode()).decode()},
    }


def shard(home: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "MessageShard",
        "metadata": {"name": f"{home}-{index}", "namespace": "ns"},
        "spec": {
            "region": home,
            "index": index,
            "firstSlot": NAMES.index(home) * 20 + index * 10,
            "lastSlot": NAMES.index(home) * 20 + index * 10 + 9,
            "owner": home,
            "epoch": 1,
        },
    }


class Cluster(FakeKube):
    """One region's API server, which can be lost."""

    def __init__(self, *objects: Mapping[str, Any]) -> None:
        super().__init__(*objects)
        self.down = False
        self.tokens: list[str] = []

    async def get(self, kind: str, namespace: str | None, name: str) -> Any:
        if self.down:
            raise httpx.ConnectError("connection refused")
        return await super().get(kind, namespace, name)

    async def list(self, kind: str, namespace: str | None, **kw: Any) -> Any:
        if self.down:
            raise httpx.ConnectError("connection refused")
        return await super().list(kind, namespace, **kw)

    def owners(self) -> dict[str, tuple[str, int, bool]]:
        """Shard -> (owner, epoch, adopted) of the MessageShards in this cluster."""
        return {
            name: (
                o["spec"]["owner"],
                o["spec"]["epoch"],
                "tidings.dev/adopted-by" in (o["metadata"].get("labels") or {}),
            )
            for (kind, _, name), o in self.objects.items()
            if kind == "MessageShard"
        }


class Clusters:
    """Three regions, each with its own cluster and operator, peers read over there."""

    def __init__(self) -> None:
        self.clusters: dict[str, Cluster] = {}
        for name in NAMES:
            body = region_body(name, shards=2)
            body["spec"]["peers"] = [
                {
                    "name": p,
                    "gatewayEndpoint": f"http://{p}.gw",
                    "kafkaBootstrapServers": f"{p}:9092",
                    "kubeconfigSecret": f"{p}-kubeconfig",
                }
                for p in NAMES
                if p != name
            ]
            body["spec"]["failover"] = {"policy": "Automatic", "detectionWindowSeconds": WINDOW}
            secrets = [kubeconfig_secret(p) for p in NAMES if p != name]
            self.clusters[name] = Cluster(body, *secrets, shard(name, 0), shard(name, 1))
        self.clock = FakeClock(T0)
        self.down: set[str] = set()
        """Regions whose data plane (gateways and Kafka) does not answer."""
        self.running = set(NAMES)
        self.loops = {
            name: FailoverLoop(
                cast(Kube, self.clusters[name]),
                self.clock,
                heartbeat_seconds=3 * TICK,
                gateway_probe=self.probe,
                kafka_probe=self.probe,
                peers=PeerClusters(cast(Kube, self.clusters[name]), self.connect),
            )
            for name in NAMES
        }

    def connect(self, cfg: kclient.Configuration) -> Kube:
        peer = cfg.host.removeprefix("https://").split(".")[0]
        cluster = self.clusters[peer]
        cluster.tokens.append(
            cfg.get_api_key_with_prefix("authorization")
            or cfg.get_api_key_with_prefix("BearerToken")
        )
        return cast(Kube, cluster)

    async def probe(self, address: str) -> str | None:
        target = address.removeprefix("http://").split(".")[0].split(":")[0]
        return f"{address}: connection refused" if target in self.down else None

    async def run(self, seconds: int) -> None:
        for _ in range(seconds // TICK):
            self.clock.advance(TICK)
            for name in sorted(self.running):
                await self.loops[name].tick(Key("ChatRegion", "ns", name))

    def peer(self, name: str, peer: str) -> dict[str, Any]:
        peers = self.clusters[name].status("ChatRegion", name)["failover"]["peers"]
        found: dict[str, Any] = next(p for p in peers if p["name"] == peer)
        return found


async def test_peers_are_read_in_their_own_clusters_with_the_secrets_credentials() -> None:
    world = Clusters()
    await world.run(2 * TICK)
    for name in NAMES:
        for peer in NAMES:
            if peer != name:
                assert world.peer(name, peer)["health"] == "Healthy"
    # Each cluster holds only its own region's heartbeat; peers read it there.
    for name, cluster in world.clusters.items():
        leases = {n for (kind, _, n) in cluster.objects if kind == "Lease"}
        assert leases == {f"tidings-region-{name}"}
        assert set(cluster.tokens) == {f"Bearer token-for-{name}"}


async def test_an_operator_down_in_its_own_cluster_is_operator_down_not_failed() -> None:
    world = Clusters()
    await world.run(2 * TICK)
    world.running.discard("eu")  # its API server and data plane serve on
    await world.run(3 * WINDOW)
    for judge in ("us", "ap"):
        seen = world.peer(judge, "eu")
        assert (seen["health"], seen["reason"]) == ("OperatorDown", "OperatorDown")


async def test_a_region_lost_whole_is_failed_by_the_two_others() -> None:
    world = Clusters()
    await world.run(2 * TICK)
    world.running.discard("eu")
    world.down.add("eu")
    world.clusters["eu"].down = True  # its API server went with it
    await world.run(WINDOW + 2 * TICK)
    for judge in ("us", "ap"):
        seen = world.peer(judge, "eu")
        assert (seen["health"], seen["votes"], seen["votesNeeded"]) == ("Failed", 2, 2)
        assert "its cluster:" in seen["message"]
        assert "connection refused" in seen["message"]
    # It comes back: its heartbeat is read again and it is healthy.
    world.clusters["eu"].down = False
    world.down.discard("eu")
    world.running.add("eu")
    await world.run(2 * TICK)
    assert world.peer("us", "eu")["health"] == "Healthy"
    assert "its cluster" not in world.peer("us", "eu")["message"]


async def test_a_missing_or_unusable_kubeconfig_secret_is_named_in_the_status() -> None:
    world = Clusters()
    del world.clusters["us"].objects[("Secret", "ns", "eu-kubeconfig")]
    broken = kubeconfig_secret("ap")
    broken["data"]["kubeconfig"] = base64.b64encode(b"not: [a kubeconfig").decode()
    world.clusters["us"].put(broken)
    await world.run(2 * TICK)
    eu, ap = world.peer("us", "eu"), world.peer("us", "ap")
    assert "Secret eu-kubeconfig" in eu["message"]
    assert "create it with the key kubeconfig" in eu["message"]
    assert "Secret ap-kubeconfig" in ap["message"]
    assert "not a usable kubeconfig" in ap["message"]
    # Never read: its heartbeat is unknown, which moves nothing.
    assert (eu["health"], ap["health"]) == ("Unknown", "Unknown")


def view(world: Clusters, name: str) -> dict[str, tuple[str, int]]:
    """Shard -> (owner, epoch) as ``name``'s region merges its own and its peers'."""
    cluster = world.clusters[name]
    local = [
        MessageShard.model_validate(o)
        for (k, _, _), o in cluster.objects.items()
        if k == "MessageShard"
    ]
    body = ChatRegion.model_validate(cluster.objects[("ChatRegion", "ns", name)])
    peers = world.loops[name].peers.shards("ns", body.spec.peers)
    return {s.metadata.name: (s.spec.owner, s.spec.epoch) for s in merge_shards(local, peers)}


async def test_a_region_lost_whole_has_its_shards_copied_and_taken_over_in_the_others() -> None:
    world = Clusters()
    await world.run(2 * TICK)
    everyone = {f"{n}-{i}": (n, 1) for n in NAMES for i in range(2)}
    for name in NAMES:
        assert view(world, name) == everyone  # each sees all six shards
    world.running.discard("eu")
    world.down.add("eu")
    world.clusters["eu"].down = True
    await world.run(WINDOW + 2 * TICK)
    # Its objects are out of reach: each taker made a copy of its share in its cluster.
    assert world.clusters["us"].owners()["eu-1"] == ("us", 2, True)
    assert world.clusters["ap"].owners()["eu-0"] == ("ap", 2, True)
    assert "eu-0" not in world.clusters["us"].owners()
    taken = {**everyone, "eu-0": ("ap", 2), "eu-1": ("us", 2)}
    assert view(world, "us") == view(world, "ap") == taken
    await world.run(WINDOW)  # no second move
    assert view(world, "us") == view(world, "ap") == taken
    # eu returns: it reads the copies and routes its own users to the takers; nothing
    # fails back by itself.
    world.clusters["eu"].down = False
    world.down.discard("eu")
    world.running.add("eu")
    await world.run(2 * TICK)
    assert world.clusters["eu"].owners()["eu-0"] == ("eu", 1, False)
    assert view(world, "eu") == view(world, "us") == taken
