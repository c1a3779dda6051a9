"""Three regions on one machine, each running what a region runs: the servers of
``scripts/regions`` (its own Kafka, Redis, bucket store, API server and Cassandra
datacenter) plus its platform processes (``tidings serve`` gateway, router, delivery,
presence) and its operator, watching its own API server and reading its peers through
theirs (a kubeconfig Secret per peer).

Every process started here writes a pid file into the region's ``pids/`` folder, so
``scripts/regions kill REGION`` takes it with the rest of the region, at once.

No kubelet runs in a region's minimal control plane, so the operator's Deployments never
get pods; the processes run beside it instead, and :class:`MapMount` plays the kubelet's
part for the one thing they take from it: the shard map ConfigMap, copied into the
region's ``shardmap.json`` whole (written aside, then renamed) whenever it changes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _servers
import httpx
import yaml  # type: ignore[import-untyped]
from _servers import ROOT, ServerError

from tidings.core.shardmap import SLOTS, parse_shard_map
from tidings_operator.names import shard_map_config_map
from tidings_operator.resources.shards import SHARD_MAP_KEY

REGIONS = ("us-east", "eu-west", "ap-south")
COMPONENTS = ("gateway", "router", "delivery", "presence")
SCRIPT = ROOT / "scripts" / "regions"
CRDS = (ROOT / "crds", ROOT / "tests" / "crds")
OPERATOR = str(Path(sys.executable).with_name("tidings-operator"))
PARTITIONS = 4
RESTARTS = 3
"""Restarts of a platform process that exits during start-up, as a kubelet would."""
SHARDS_PER_REGION = 2
PORT_OFFSETS = {"gateway": 30, "router": 32, "delivery": 34, "presence": 36, "operator": 38}
"""A process's client port is the region's base + its offset, its operations port the
next one: fixed, so a region brought back answers where its peers look for it."""


def regions_script(*args: str, timeout: float = 900.0) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise ServerError(f"scripts/regions {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


@dataclass
class Region:
    name: str
    index: int
    env: dict[str, str]
    """What ``scripts/regions env`` exports for it."""

    @property
    def base(self) -> int:
        return 21000 + 100 * self.index

    def port(self, process: str) -> int:
        return self.base + PORT_OFFSETS[process]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.port('gateway')}"

    @property
    def kubeconfig(self) -> Path:
        return Path(self.env["TIDINGS_REGION_KUBECONFIG"])

    @property
    def pids(self) -> Path:
        return Path(self.env["TIDINGS_REGION_PIDS"])

    def kubectl(
        self, *args: str, input: str | None = None, plugins: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            ["kubectl", *([] if plugins else ["--kubeconfig", str(self.kubeconfig)]), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    def must(self, *args: str, input: str | None = None, plugins: bool = False) -> str:
        done = self.kubectl(*args, input=input, plugins=plugins)
        if done.returncode != 0:
            raise ServerError(f"{self.name}: kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def load_regions(names: Iterable[str] = REGIONS) -> list[Region]:
    found = []
    for i, name in enumerate(names):
        found.append(Region(name, i, _servers.exports(regions_script("env", name))))
    return found


class ApiReader:
    """GETs on one region's API server with its kubeconfig's token and CA (no kubectl
    process per read: the mounts poll every half second)."""

    def __init__(self, kubeconfig: Path) -> None:
        doc = yaml.safe_load(kubeconfig.read_text())
        cluster = doc["clusters"][0]["cluster"]
        user = doc["users"][0]["user"]
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        self.http = httpx.AsyncClient(
            base_url=cluster["server"],
            verify=context,
            headers={"Authorization": f"Bearer {user['token']}"},
            timeout=5.0,
        )

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``; None when absent or the API server does not answer."""
        try:
            response = await self.http.get(path)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        found: dict[str, Any] = response.json()
        return found

    async def close(self) -> None:
        await self.http.aclose()


@dataclass
class MapMount:
    """The kubelet's part for one region: its shard map ConfigMap, copied to a file."""

    region: Region
    namespace: str
    path: Path
    reader: ApiReader
    document: str = ""

    async def sync(self) -> bool:
        """Copy the ConfigMap if it changed; True when the file holds a map."""
        found = await self.reader.get(
            f"/api/v1/namespaces/{self.namespace}/configmaps/{shard_map_config_map(self.region.name)}"
        )
        document = ((found or {}).get("data") or {}).get(SHARD_MAP_KEY, "")
        if document and document != self.document:
            aside = self.path.with_suffix(".new")
            aside.write_text(document)
            aside.replace(self.path)
            self.document = document
        return bool(self.document)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # an unreachable API server: try again
                await self.sync()
            await asyncio.sleep(0.5)


def owners(document: str, here: str) -> dict[str, str]:
    """Shard -> owner region in ``here``'s published shard map (its gaps left out)."""
    return {s.name: s.owner_region for s in parse_shard_map(document, here).shards if s.epoch}


class Link:
    """How one region reaches one service of another (its API server, its gateway, its
    Kafka bootstrap): a TCP relay in this process that :meth:`cut` closes, refusing new
    connections and cutting open ones, as a network partition between the two would.
    ``mend`` opens it again."""

    def __init__(self, port: int, upstream: str) -> None:
        host, upstream_port = upstream.rsplit(":", 1)
        self.port, self.upstream = port, (host, int(upstream_port))
        self.server: asyncio.Server | None = None
        self.open: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def mend(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for writer in list(self.open):
            writer.transport.abort()
        if server is not None:
            await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            far_reader, far_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()  # the far side is down: so is the way to it
            return
        self.open |= {writer, far_writer}
        try:
            await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))
        finally:
            self.open -= {writer, far_writer}
            for end in (writer, far_writer):
                end.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()


LINK_SERVICES = ("api", "gateway", "kafka")


def api_address(region: Region) -> str:
    """``host:port`` of the region's API server, from its kubeconfig."""
    server: str = yaml.safe_load(region.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return server.removeprefix("https://")


def answers(region: Region) -> bool:
    """Whether the region's Kafka, API server and Cassandra node all take connections."""
    addresses = [
        region.env["TIDINGS_KAFKA_BOOTSTRAP"],
        api_address(region),
        f"{region.env['TIDINGS_CASSANDRA_CONTACT_POINTS']}:{region.env['TIDINGS_CASSANDRA_PORT']}",
    ]
    for address in addresses:
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError:
            return False
    return True


def slot_range(index: int, count: int) -> dict[str, int]:
    size = SLOTS // count
    last = SLOTS - 1 if index == count - 1 else (index + 1) * size - 1
    return {"first": index * size, "last": last}


class Regions:
    """The regions and everything the harness runs in them."""

    def __init__(self, work: Path, *, window: int, keyspace: str, log_level: str = "warning"):
        self.work = work
        self.namespace = f"run-{keyspace.rsplit('_', 1)[-1]}"
        """A namespace of its own in each region's API server per run: no controller
        deletes namespaces there, and a ChatRegion's keyspace cannot change."""
        self.window = window
        self.keyspace = keyspace
        self.log_level = log_level
        self.data = work / "data"
        """One data directory for every process: dev-mode codes land in one outbox."""
        self.all: list[Region] = []
        self.servers: dict[str, list[_servers.Server]] = {}
        self.operators: dict[str, subprocess.Popen[bytes]] = {}
        self.mounts: dict[str, MapMount] = {}
        self.links: dict[tuple[str, str, str], Link] = {}
        """(from region, to region, service) -> the way there (see ``Link``)."""
        self._mount_tasks: dict[str, asyncio.Task[None]] = {}

    def region(self, name: str) -> Region:
        return next(r for r in self.all if r.name == name)

    async def bring_up(self, say: Callable[[str], None]) -> None:
        """Every region's servers (``scripts/regions up``), the links between them, then
        region by region its operator, shard map and platform processes: the first
        region's operator creates the keyspace and tables before the others start, as
        schema changes from three datacenters at once can disagree."""
        say("scripts/regions up (each region's servers and Cassandra datacenter)")
        await asyncio.to_thread(regions_script, "up")
        self.all = load_regions()
        await self.open_links()
        for region in self.all:
            say(f"{region.name}: operator, shard map, gateway, router, delivery, presence")
            await self.start(region)

    async def open_links(self) -> None:
        """A link from each region to each other's API server, gateway and Kafka: what
        a region's operator and processes use to reach a peer."""
        for here in self.all:
            for there in self.all:
                if there is here:
                    continue
                upstreams = {
                    "api": api_address(there),
                    "gateway": f"127.0.0.1:{there.port('gateway')}",
                    "kafka": there.env["TIDINGS_KAFKA_BOOTSTRAP"],
                }
                for k, service in enumerate(LINK_SERVICES):
                    port = here.base + 50 + 3 * there.index + k
                    link = Link(port, upstreams[service])
                    await link.mend()
                    self.links[here.name, there.name, service] = link

    def link(self, here: Region, there: Region, service: str) -> str:
        """Where ``here`` reaches ``there``'s ``service`` (``host:port``)."""
        return self.links[here.name, there.name, service].address

    async def partition(self, name: str, *, cut: bool) -> None:
        """Cut (or mend) every link to and from region ``name``."""
        for (here, there, _), link in self.links.items():
            if name in (here, there):
                await (link.cut() if cut else link.mend())

    # -- the custom resources ------------------------------------------------------------
    def manifest(self, region: Region) -> dict[str, Any]:
        env = region.env
        return {
            "apiVersion": "tidings.dev/v1beta1",
            "kind": "ChatRegion",
            "metadata": {"name": region.name, "namespace": self.namespace},
            "spec": {
                "image": "tidings:test",
                "devMode": True,
                "publicUrl": region.gateway_url,
                "components": {"gateway": {"replicas": 1}},
                "kafka": {
                    "bootstrapServers": env["TIDINGS_KAFKA_BOOTSTRAP"],
                    "partitions": PARTITIONS,
                    "replicationFactor": 1,
                },
                "cassandra": {
                    "contactPoints": [env["TIDINGS_CASSANDRA_CONTACT_POINTS"]],
                    "port": int(env["TIDINGS_CASSANDRA_PORT"]),
                    "datacenter": region.name,
                    "keyspace": self.keyspace,
                    "replication": {r.name: 1 for r in self.all},
                },
                "redis": {"url": env["TIDINGS_REDIS_URL"]},
                "s3": {"bucket": env["TIDINGS_S3_BUCKET"], "endpoint": env["TIDINGS_S3_ENDPOINT"]},
                "shards": SHARDS_PER_REGION,
                "slotRange": slot_range(region.index, len(self.all)),
                "deletionPolicy": "Retain",
                "peers": [
                    {
                        "name": peer.name,
                        "namespace": self.namespace,
                        "kubeconfigSecret": f"peer-{peer.name}",
                        "kafkaBootstrapServers": self.link(region, peer, "kafka"),
                        "gatewayEndpoint": f"http://{self.link(region, peer, 'gateway')}",
                    }
                    for peer in self.all
                    if peer is not region
                ],
                "failover": {"policy": "Automatic", "detectionWindowSeconds": self.window},
            },
        }

    def peer_kubeconfig(self, region: Region, peer: Region) -> bytes:
        """``peer``'s kubeconfig, reaching its API server through the link from
        ``region`` (its certificate names 127.0.0.1, whatever the port)."""
        text = peer.kubeconfig.read_text()
        return text.replace(api_address(peer), self.link(region, peer, "api")).encode()

    def install(self, region: Region) -> None:
        """CRDs, the namespace, a Secret per peer holding the peer's kubeconfig, and the
        region's ChatRegion (idempotent)."""
        for folder in CRDS:
            region.must("apply", "--server-side", "--force-conflicts", "-f", str(folder))
        for folder in CRDS:
            region.must("wait", "--for=condition=Established", "-f", str(folder), "--timeout=60s")
        region.kubectl("create", "namespace", self.namespace)
        for peer in self.all:
            if peer is region:
                continue
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"peer-{peer.name}", "namespace": self.namespace},
                "data": {
                    "kubeconfig": base64.b64encode(self.peer_kubeconfig(region, peer)).decode()
                },
            }
            region.must("apply", "-f", "-", input=json.dumps(secret))
        region.must("apply", "-f", "-", input=json.dumps(self.manifest(region)))

    # -- processes ------------------------------------------------------------------------
    def _pid_file(self, region: Region, name: str, pid: int) -> None:
        region.pids.mkdir(parents=True, exist_ok=True)
        (region.pids / f"{name}.pid").write_text(f"{pid} {_servers.start_time(pid)}\n")

    def start_operator(self, region: Region) -> None:
        health, metrics = region.port("operator"), region.port("operator") + 1
        log = (self.work / f"operator-{region.name}.log").open("ab")
        process = subprocess.Popen(
            [
                OPERATOR,
                "run",
                f"--namespace={self.namespace}",
                "--kubeconfig",
                str(region.kubeconfig),
                "--region",
                region.name,
                "--standalone",
                "--health-port",
                str(health),
                "--metrics-port",
                str(metrics),
                "--heartbeat-interval",
                "1",
                "--reconcile-interval",
                "5",
                "--watch-timeout",
                "60",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.operators[region.name] = process
        self._pid_file(region, "operator", process.pid)

    def platform_env(self, region: Region) -> dict[str, str]:
        env = region.env
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        return {
            **base,
            **_servers.SIGNUP_LIMITS,
            "TIDINGS_ENGINE": "distributed",
            "TIDINGS_REGION": region.name,
            "TIDINGS_LOG_LEVEL": self.log_level,
            "TIDINGS_DEV_MODE": "true",
            "TIDINGS_PARTITIONS": str(PARTITIONS),
            "TIDINGS_SHARD_MAP_FILE": str(self.mounts[region.name].path),
            "TIDINGS_KAFKA_BOOTSTRAP": env["TIDINGS_KAFKA_BOOTSTRAP"],
            "TIDINGS_KAFKA_PEERS": ";".join(
                f"{peer.name}={peer.env['TIDINGS_KAFKA_BOOTSTRAP']}"
                for peer in self.all
                if peer is not region
            ),
            "TIDINGS_REDIS_URL": env["TIDINGS_REDIS_URL"],
            "TIDINGS_CASSANDRA_CONTACT_POINTS": env["TIDINGS_CASSANDRA_CONTACT_POINTS"],
            "TIDINGS_CASSANDRA_PORT": env["TIDINGS_CASSANDRA_PORT"],
            "TIDINGS_CASSANDRA_LOCAL_DC": region.name,
            "TIDINGS_CASSANDRA_KEYSPACE": self.keyspace,
            "TIDINGS_CASSANDRA_REPLICATION": ",".join(f"{r.name}:1" for r in self.all),
            **{k: env[k] for k in env if k.startswith("TIDINGS_S3_")},
        }

    async def start_platform(self, region: Region) -> None:
        env = self.platform_env(region)
        log = self.work / f"platform-{region.name}.log"
        started = []
        for name in COMPONENTS:
            for attempt in range(RESTARTS + 1):
                try:
                    server = await _servers.start(
                        name,
                        ["serve", name],
                        self.data,
                        env,
                        log,
                        port=region.port(name),
                        ops_port=region.port(name) + 1,
                    )
                    break
                except ServerError:  # the kubelet's part again: restart a process that
                    if attempt == RESTARTS:  # exited at start (a store not ready yet)
                        raise
                    await asyncio.sleep(2.0 * (attempt + 1))
            started.append(server)
            self._pid_file(region, name, server.pid)
        self.servers[region.name] = started

    async def mount(self, region: Region, timeout: float = 180.0) -> None:
        """Start copying the region's shard map, once the operator published one."""
        mount = self.mounts.get(region.name)
        if mount is None:
            reader = ApiReader(region.kubeconfig)
            mount = MapMount(
                region, self.namespace, self.work / f"shardmap-{region.name}.json", reader
            )
            self.mounts[region.name] = mount
        deadline = time.monotonic() + timeout
        while not await mount.sync():
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{region.name}: no shard map ConfigMap within {timeout:.0f}s; operator "
                    f"log:\n{_servers.log_tail(self.work / f'operator-{region.name}.log')}"
                )
            await asyncio.sleep(0.5)
        self._mount_tasks[region.name] = asyncio.get_running_loop().create_task(mount.run())

    async def start(self, region: Region) -> None:
        """The region's operator, its map mount and its platform processes."""
        await asyncio.to_thread(self.install, region)
        self.start_operator(region)
        await self.mount(region)
        await self.start_platform(region)

    # -- faults ---------------------------------------------------------------------------
    def kill(self, name: str) -> str:
        """SIGKILL the region whole (``scripts/regions kill``): servers, operator, processes."""
        out = regions_script("kill", name)
        self.forget(name)
        return out

    def forget(self, name: str) -> None:
        """Drop what the harness holds of the region's processes (gone with it)."""
        self.operators.pop(name, None)
        self.servers.pop(name, None)
        task = self._mount_tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def revive(self, name: str) -> None:
        """Its servers back (``scripts/regions up``) with their data, then the rest."""
        await asyncio.to_thread(regions_script, "up", name)
        await self.start(self.region(name))

    def running(self, name: str) -> bool:
        """Whether the region's operator runs (a kill takes it with the rest)."""
        process = self.operators.get(name)
        return process is not None and process.poll() is None

    async def supervise(self, stop: asyncio.Event) -> None:
        """What a cluster's kubelets do for pods: a region killed whole gets its
        operator and platform processes back once its servers answer again (after
        ``scripts/regions up REGION``)."""
        while not stop.is_set():
            for region in self.all:
                if self.running(region.name):
                    continue
                if any(s.alive for s in self.servers.get(region.name, [])):
                    self.start_operator(region)  # the operator alone went
                elif await asyncio.to_thread(answers, region):
                    self.forget(region.name)
                    await self.start(region)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)

    # -- reading ------------------------------------------------------------------------
    def routes(self, name: str) -> dict[str, str]:
        """Shard -> owner in the map ``name``'s processes follow now."""
        mount = self.mounts.get(name)
        return owners(mount.document, name) if mount is not None and mount.document else {}

    def rss_mib(self) -> dict[str, float]:
        """Region -> resident memory of everything it runs (from ``scripts/regions status``)."""
        out = regions_script("status")
        return {
            m.group(1): float(m.group(2))
            for m in re.finditer(r"^(\S+)\s+\(region total\)\s+(\d+) MiB$", out, re.M)
        }

    async def stop(self) -> None:
        for task in self._mount_tasks.values():
            task.cancel()
        await asyncio.gather(*self._mount_tasks.values(), return_exceptions=True)
        for mount in self.mounts.values():
            await mount.reader.close()
        for link in self.links.values():
            await link.cut()
        await _servers.stop([s for group in self.servers.values() for s in group])
        for process in self.operators.values():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in self.operators.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for region in self.all:  # the servers' pid files beside them stay
            for name in (*COMPONENTS, "operator"):
                (region.pids / f"{name}.pid").unlink(missing_ok=True)
