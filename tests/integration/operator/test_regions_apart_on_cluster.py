"""Regions that share nothing on the API server: each in a namespace of its own, run by
its own operator watching only that namespace, its peers listed with a kubeconfig
Secret and their namespace, as regions in clusters of their own are (the Secret's
kubeconfig reaches this one API server; the operators read each other only through it).

Each region sees the others healthy and publishes all the shards in its map; a region
whose operator and data plane are both gone (its Kafka, here a relay the test
closes) is failed by the other two, which copy its shards into their own namespaces and
serve them; a person's failover and failback across namespaces move shards at epochs
above every copy."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from operator_support import (
    OperatorProcess,
    apply,
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
SECRET = "peers-kubeconfig"


class Relay:
    """A region's Kafka as its peers' probes reach it: a TCP relay to the session's real
    Kafka (the probes ask it for ``ApiVersions``) until closed, when the region's data
    plane is lost: no connection is taken any more, and the open ones are cut."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        host, upstream_port = upstream.split(",")[0].rsplit(":", 1)
        self.upstream = (host, int(upstream_port))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                try:
                    far = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    conn.close()
                    continue
                self.open += [conn, far]
                for a, b in ((conn, far), (far, conn)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        source.close()  # each socket is read by one pipe, which closes it

    def close(self) -> None:
        self.sock.close()
        for conn in self.open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class Apart:
    def __init__(self, kube: KubeEnv, kafka: str, cassandra: dict[str, str], logs: Path) -> None:
        install_crds(kube)
        suffix = uuid.uuid4().hex[:8]
        self.kube, self.logs, self.kafka = kube, logs, kafka
        self.names = [f"{letter}{suffix}" for letter in "abc"]
        self.namespaces = {name: f"ap-{name}" for name in self.names}
        self.data_planes = {name: Relay(kafka) for name in self.names}
        secret = base64.b64encode(kube.kubeconfig.read_bytes()).decode()
        self.manifests: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(self.names):
            namespace = self.namespaces[name]
            kube.kubectl("create", "namespace", namespace)
            apply(
                kube,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": SECRET, "namespace": namespace},
                    "data": {"kubeconfig": secret},
                },
            )
            self.manifests[name] = region_manifest(
                name,
                namespace,
                kafka=kafka,
                cassandra=cassandra,
                keyspace=f"ap_{name}",
                shards=2,
                slotRange={"first": i * 341, "last": 1023 if i == 2 else (i + 1) * 341 - 1},
                peers=[
                    {
                        "name": p,
                        "namespace": self.namespaces[p],
                        "kubeconfigSecret": SECRET,
                        "kafkaBootstrapServers": self.data_planes[p].address,
                        "gatewayEndpoint": "http://127.0.0.1:9",  # refuses at once
                    }
                    for p in self.names
                    if p != name
                ],
                failover={"policy": "Automatic", "detectionWindowSeconds": WINDOW},
            )

    def get(self, region: str, *what: str) -> dict[str, Any] | None:
        return get_json(self.kube, "-n", self.namespaces[region], *what)

    def operator(self, region: str) -> contextlib.AbstractContextManager[OperatorProcess]:
        return running_operator(
            self.kube,
            [self.namespaces[region]],
            self.logs / f"{region}.log",
            "--region",
            region,
            "--heartbeat-interval",
            "1",
            interval=3.0,
        )

    def peer(self, region: str, peer: str) -> dict[str, Any]:
        return peer_seen(self.get(region, "chatregion", region), peer)

    def routed_by(self, region: str) -> dict[str, tuple[str, int]]:
        """Shard -> (owner, epoch) in ``region``'s published map (slots it routes)."""
        found = routed(self.get(region, "configmap", shard_map_config_map(region)), region)
        return {name: owned for name, owned in found.items() if owned[1]}

    def shards_here(self, region: str) -> dict[str, tuple[str, int]]:
        found = self.get(region, "messageshards") or {}
        return {
            s["metadata"]["name"]: (s["spec"]["owner"], s["spec"]["epoch"])
            for s in found.get("items") or []
        }

    def tidings(self, region: str, *args: str, check: bool = True) -> Any:
        namespace = self.namespaces[region]
        return self.kube.kubectl("tidings", "-n", namespace, *args, check=check, plugins=True)

    def release(self) -> None:
        for name, namespace in self.namespaces.items():
            self.kube.kubectl(
                "-n",
                namespace,
                "patch",
                "chatregion",
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
            self.kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        for relay in self.data_planes.values():
            relay.close()


@pytest.fixture
def apart(
    kube_env: KubeEnv, kafka_bootstrap: str, cassandra_env: dict[str, str], tmp_path: Path
) -> Iterator[Apart]:
    regions = Apart(kube_env, kafka_bootstrap, cassandra_env, tmp_path)
    yield regions
    regions.release()


@pytest.mark.timeout(300)
def test_regions_apart_see_each_other_take_over_a_lost_one_and_move_on_command(
    apart: Apart,
) -> None:
    a, b, c = apart.names
    everyone = {f"{n}-{i}": (n, 1) for n in apart.names for i in range(2)}
    with ExitStack() as stack:
        stack.enter_context(apart.operator(a))
        stack.enter_context(apart.operator(b))
        op_c = stack.enter_context(apart.operator(c))
        for name in apart.names:
            apply(apart.kube, apart.manifests[name])
        for name in apart.names:
            eventually(
                lambda n=name: ready_now(apart.get(n, "chatregion", n)),
                f"ChatRegion {name} to turn Ready",
            )
        eventually(
            lambda: all(
                apart.peer(r, p).get("health") == "Healthy"
                for r in apart.names
                for p in apart.names
                if p != r
            ),
            "each region to see every peer healthy through its kubeconfig Secret",
        )
        for name in apart.names:
            # Its own two shards here; all six in the map it publishes.
            assert set(apart.shards_here(name)) == {f"{name}-0", f"{name}-1"}
            eventually(
                lambda n=name: apart.routed_by(n) == everyone,
                f"{name}'s shard map to hold every region's shards",
            )

        # c is lost whole: its operator and its data plane.
        op_c.process.kill()
        op_c.process.wait(10)
        apart.data_planes[c].close()
        for judge in (a, b):
            eventually(
                lambda j=judge: apart.peer(j, c).get("health") == "Failed",
                f"{judge} to judge {c} failed",
            )
        # Its shards are in its namespace, out of the takers' reach: each copies its
        # share into its own namespace, and the maps route them to the takers.
        eventually(
            lambda: (
                apart.shards_here(a).get(f"{c}-0") == (a, 2)
                and apart.shards_here(b).get(f"{c}-1") == (b, 2)
            ),
            f"{a} and {b} to each take one of {c}'s shards",
        )
        taken = {**everyone, f"{c}-0": (a, 2), f"{c}-1": (b, 2)}
        for judge in (a, b):
            eventually(
                lambda j=judge: apart.routed_by(j) == taken,
                f"{judge}'s map to route {c}'s shards to their takers",
            )
        assert apart.shards_here(c) == {f"{c}-0": (c, 1), f"{c}-1": (c, 1)}

        # A person moves every shard a serves to b (the copy it took over too), then
        # a's own back, from a's namespace.
        apart.tidings(a, "failover", a, "--to", b)
        moved = {**taken, f"{a}-0": (b, 2), f"{a}-1": (b, 2), f"{c}-0": (b, 3)}
        eventually(lambda: apart.routed_by(b) == moved, f"{b}'s map to route {a}'s shards to {b}")
        back = apart.tidings(a, "failback", a)
        assert f"moved shard {a}-0: {b} -> {a} (epoch 2 -> 3)" in back.stdout
        home = {**moved, f"{a}-0": (a, 3), f"{a}-1": (a, 3)}
        for judge in (a, b):
            eventually(lambda j=judge: apart.routed_by(j) == home, f"{judge}'s map after failback")

        # c comes back: healthy again, it follows the copies, and keeps none of its
        # shards until a person fails them back.
        port = int(apart.data_planes[c].address.rsplit(":", 1)[1])
        apart.data_planes[c] = Relay(apart.kafka, port)
        stack.enter_context(apart.operator(c))
        eventually(
            lambda: apart.peer(a, c).get("health") == "Healthy", f"{a} to see {c} healthy again"
        )
        eventually(lambda: apart.routed_by(c) == home, f"{c}'s map to follow the takers")
        assert apart.shards_here(c) == {f"{c}-0": (c, 1), f"{c}-1": (c, 1)}
        back = apart.tidings(c, "failback", c)
        assert f"moved shard {c}-0: {b} -> {c} (epoch 3 -> 4)" in back.stdout
        assert f"moved shard {c}-1: {b} -> {c} (epoch 2 -> 3)" in back.stdout
        final = {**home, f"{c}-0": (c, 4), f"{c}-1": (c, 3)}
        for judge in apart.names:
            eventually(
                lambda j=judge: apart.routed_by(j) == final, f"{judge}'s map after {c}'s failback"
            )
        # The copies the takers made are gone once superseded.
        for taker in (a, b):
            eventually(
                lambda t=taker: not {f"{c}-0", f"{c}-1"} & set(apart.shards_here(t)),
                f"{taker}'s copies of {c}'s shards to be deleted",
            )
