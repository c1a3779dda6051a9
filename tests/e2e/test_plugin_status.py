"""``kubectl tidings status`` against the loopback API server and the real Prometheus:
two ChatRegions and their MessageShards (one taken over) with the statuses an operator
writes, a ``tidings up`` process scraped under one region with a device connected, and
an alert firing on that region. The screen shows each region's health, peers, shards
owned and home, epochs, lag, sockets and alert; without Prometheus it says how to get
them, and with a Prometheus that does not answer it says so and exits 1."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import procs
from harness import online, register
from operator_support import install_crds, region_manifest
from prometheus_support import Prometheus, prometheus_env, scrape_address
from servers import KubeEnv

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
FAKE_CASSANDRA = {  # nothing connects: no operator runs here, the test writes the statuses
    "TIDINGS_CASSANDRA_LOCAL_DC": "dc1",
    "TIDINGS_CASSANDRA_CONTACT_POINTS": "127.0.0.1",
    "TIDINGS_CASSANDRA_PORT": "9042",
}


def shard(namespace: str, home: str, index: int, owner: str, epoch: int) -> dict[str, Any]:
    return {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "MessageShard",
        "metadata": {"name": f"{home}-{index}", "namespace": namespace},
        "spec": {
            "region": home,
            "index": index,
            "firstSlot": index * 10,
            "lastSlot": index * 10 + 9,
            "owner": owner,
            "epoch": epoch,
        },
    }


def set_status(kube: KubeEnv, namespace: str, kind: str, name: str, status: Any) -> None:
    kube.kubectl(
        *("-n", namespace, "patch", kind, name, "--subresource=status", "--type=merge"),
        "-p",
        json.dumps({"status": status}),
    )


def ready(message: str = "") -> list[dict[str, str]]:
    return [
        {
            "type": "Ready",
            "status": "True" if not message else "False",
            "reason": "AllReady" if not message else "ComponentsNotReady",
            "message": message,
            "lastTransitionTime": NOW,
        }
    ]


def make_regions(kube: KubeEnv, namespace: str, east: str, west: str) -> None:
    for name, peer in ((east, west), (west, east)):
        manifest = region_manifest(
            name,
            namespace,
            kafka="127.0.0.1:9092",
            cassandra=FAKE_CASSANDRA,
            keyspace=f"status_{name}",
            shards=2,
            peers=[{"name": peer}],
        )
        kube.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
    shards = [
        (shard(namespace, east, 0, east, 1), 5),
        (shard(namespace, east, 1, east, 1), 7),
        (shard(namespace, west, 0, east, 3), 100),  # taken over by east
        (shard(namespace, west, 1, west, 2), 0),
    ]
    for body, lag in shards:
        kube.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(body))
        status = {"phase": "Serving", "owner": body["spec"]["owner"], "consumerLag": lag}
        set_status(kube, namespace, "messageshard", body["metadata"]["name"], status)
    east_status = {
        "phase": "Ready",
        "componentsReady": "7/7",
        "conditions": ready(),
        "failover": {"peers": [{"name": west, "health": "Failed", "since": NOW}]},
    }
    west_status = {"phase": "Degraded", "componentsReady": "5/7", "conditions": ready("gw 0/1")}
    set_status(kube, namespace, "chatregion", east, east_status)
    set_status(kube, namespace, "chatregion", west, west_status)


def block_of(screen: str, region: str) -> list[str]:
    (block,) = [b for b in screen.split("\n\n") if b.startswith(region + " ")]
    return block.splitlines()


def field(block: list[str], key: str) -> str:
    (row,) = [r.strip() for r in block if r.strip().startswith(key + " ")]
    return row.removeprefix(key).strip()


def reload_rules(url: str) -> None:
    httpx.post(f"{url}/-/reload", timeout=30).raise_for_status()


def firing(url: str, namespace: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return [
        a for a in alerts if a["labels"].get("namespace") == namespace and a["state"] == "firing"
    ]


@pytest.fixture
def prometheus() -> Prometheus:
    env = prometheus_env("up")
    return Prometheus(env["TIDINGS_PROMETHEUS_URL"], Path(env["TIDINGS_PROMETHEUS_TARGETS_DIR"]))


async def test_status_shows_each_region_with_sockets_and_alerts_from_prometheus(
    kube_env: KubeEnv, prometheus: Prometheus, tmp_path: Path
) -> None:
    install_crds(kube_env)
    suffix = uuid.uuid4().hex[:8]
    namespace, east, west = f"status-{suffix}", f"e{suffix}", f"w{suffix}"
    kube_env.kubectl("create", "namespace", namespace)
    rules = Path(prometheus_env()["TIDINGS_PROMETHEUS_RULES_DIR"]) / f"status-{suffix}.yaml"
    try:
        make_regions(kube_env, namespace, east, west)

        def status(*extra: str, check: bool = True) -> Any:
            return kube_env.kubectl(
                "tidings", "-n", namespace, "status", *extra, plugins=True, check=check
            )

        plain = status().stdout
        assert field(block_of(plain, east), "sockets") == "- (give --prometheus URL)"

        data = tmp_path / "data"
        async with procs.running(["up"], data, tmp_path / "tidings.log") as proc:
            address, path = scrape_address(proc.url, proc.ops_url)
            labels = {"namespace": namespace, "region": east, "__metrics_path__": path}
            prometheus.scrape(f"status-{suffix}", [address], labels)
            # An alert on the scraped region, as the chart's rules would raise one.
            rules.write_text(
                "groups:\n"
                f"  - name: status-test-{suffix}\n"
                "    rules:\n"
                "      - alert: TidingsStatusTest\n"
                f'        expr: tidings_ws_connections{{namespace="{namespace}"}} >= 1\n'
                "        labels: {severity: warning}\n"
                "        annotations: {summary: a device is connected}\n"
            )
            await asyncio.to_thread(reload_rules, prometheus.url)
            device = await online(await register(proc.gateway(data)))
            try:
                await asyncio.to_thread(
                    prometheus.until,
                    "the alert on the connected socket",
                    lambda: firing(prometheus.url, namespace),
                )
                screen = (await asyncio.to_thread(status, "--prometheus", prometheus.url)).stdout
            finally:
                await device.close()
                prometheus.forget(f"status-{suffix}")
    finally:
        rules.unlink(missing_ok=True)
        await asyncio.to_thread(reload_rules, prometheus.url)
        kube_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)

    east_block, west_block = block_of(screen, east), block_of(screen, west)
    assert east_block[0].split()[:4] == [east, "Ready", "components", "7/7"]
    assert field(east_block, "peers").startswith(f"{west} Failed for ")
    assert field(east_block, "shards") == "owns 3 (2 home, 1 taken over)"
    assert field(east_block, "lag") == "delivery 112, push 0"
    assert field(east_block, "sockets") == "1"
    assert field(east_block, "alerts").startswith("TidingsStatusTest warning firing for ")
    assert field(east_block, "alerts").endswith(": a device is connected")
    rows = [r.split() for r in east_block if r.startswith("  ") and r.split()[0].startswith(west)]
    assert rows == [[f"{west}-0", west, east, "3", "Serving", "100"]]

    assert west_block[0].split()[:2] == [west, "Degraded"]
    assert field(west_block, "why") == "ComponentsNotReady: gw 0/1"
    assert field(west_block, "shards") == (
        f"owns 1 (1 home, 0 taken over); home shards elsewhere: {west}-0 on {east}"
    )
    assert field(west_block, "sockets") == "no data"
    assert field(west_block, "alerts") == "none"


def test_status_says_when_prometheus_does_not_answer(kube_env: KubeEnv) -> None:
    install_crds(kube_env)
    suffix = uuid.uuid4().hex[:8]
    namespace = f"status-{suffix}"
    kube_env.kubectl("create", "namespace", namespace)
    try:
        make_regions(kube_env, namespace, f"e{suffix}", f"w{suffix}")
        # Port 9 (discard) on loopback: nothing listens, the connection is refused.
        done = kube_env.kubectl(
            "tidings",
            "-n",
            namespace,
            "status",
            "--prometheus",
            "http://127.0.0.1:9",
            plugins=True,
            check=False,
        )
    finally:
        kube_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    assert done.returncode == 1, done.stderr
    assert field(block_of(done.stdout, f"e{suffix}"), "sockets") == "- (Prometheus did not answer)"
    assert done.stdout.splitlines()[-1].startswith("Prometheus http://127.0.0.1:9: ConnectError")
    empty = kube_env.kubectl("tidings", "-n", "default", "status", plugins=True)
    assert empty.stdout.strip() == "no ChatRegions in namespace default"
