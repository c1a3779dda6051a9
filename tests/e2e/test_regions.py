"""Regions as failure domains on one machine (``scripts/regions``): each region its own
Kafka cluster, Redis, bucket store and API server, and a datacenter of its own in one
Cassandra cluster. Killing a region takes all of it at once and keeps its data; it comes
back with ``up``. A shard lease (SERIAL: a majority of all the datacenters) is renewed
with one region lost, and not with two: a region cut off from the others cannot renew,
while it still reads and writes its own datacenter.

Then the proof under load (``bench/regions.py``, small): each region runs its operator and
its platform processes, SDK clients homed in all three talk across regions and in groups
spanning them, one region is killed whole, its users are served by the survivors, it
comes back fenced and is failed back; then another region is cut off from the others,
both ways, and mended: no shard is ever held by two regions, and nothing accepted is lost
or shown twice."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from bench_support import run_bench
from servers import ROOT
from tidings.core.leases import LeaseOp, LeaseRow, OpKind
from tidings.engines.cassandra import CassandraConfig, CassandraEngine
from tidings.engines.kafka import KafkaBus
from tidings.errors import Unavailable

pytestmark = [pytest.mark.slow, pytest.mark.kube]

REGIONS = ["us-east", "eu-west", "ap-south"]
SCRIPT = ROOT / "scripts" / "regions"


def regions(*args: str, timeout: float = 900) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/regions {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def env_of(region: str) -> dict[str, str]:
    return dict(re.findall(r"^export ([A-Z0-9_]+)='([^']*)'$", regions("env", region), re.M))


def answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return False
    return True


def refuses_soon(address: str) -> bool:
    deadline = time.monotonic() + 10
    while answers(address):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def addresses(env: dict[str, str]) -> dict[str, str]:
    kubeconfig = Path(env["TIDINGS_REGION_KUBECONFIG"]).read_text()
    server = re.search(r"server: https://(\S+)", kubeconfig)
    assert server is not None
    return {
        "kafka": env["TIDINGS_KAFKA_BOOTSTRAP"],
        "redis": env["TIDINGS_REDIS_URL"].removeprefix("redis://").split("/")[0],
        "s3": env["TIDINGS_S3_ENDPOINT"].removeprefix("http://"),
        "apiserver": server.group(1),
        "cassandra": f"{env['TIDINGS_CASSANDRA_CONTACT_POINTS']}:{env['TIDINGS_CASSANDRA_PORT']}",
    }


@pytest.fixture(scope="module")
def up() -> Iterator[dict[str, dict[str, str]]]:
    regions("up")
    yield {r: env_of(r) for r in REGIONS}
    regions("down")  # about 5 GiB and three JVMs' idle CPU: not for the tests after


async def topics(env: dict[str, str]) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=env["TIDINGS_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


def kubectl(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", env["TIDINGS_REGION_KUBECONFIG"], *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@pytest.mark.timeout(900)
async def test_a_region_killed_whole_is_gone_and_comes_back_with_its_data(
    up: dict[str, dict[str, str]],
) -> None:
    us, eu, ap = (up[r] for r in REGIONS)
    status = regions("status")
    for region in REGIONS:
        assert re.search(rf"^{region}\s+\(region total\)\s+\d+ MiB$", status, re.M), status

    # Each region's Kafka and API server are its own.
    topic, mark = f"t{uuid.uuid4().hex[:10]}", f"cm-{uuid.uuid4().hex[:8]}"
    us_bus = KafkaBus(us["TIDINGS_KAFKA_BOOTSTRAP"], client_id="regions-test")
    await us_bus.start()
    try:
        await us_bus.ensure_topic(topic, 1)
        await us_bus.produce(topic, [("k", b"kept")])
    finally:
        await us_bus.close()
    assert topic in await topics(us)
    assert topic not in await topics(eu)
    kubectl(ap, "create", "configmap", mark, "--from-literal=kept=yes")
    assert kubectl(us, "get", "configmap", mark, check=False).returncode != 0

    # A keyspace with a replica in each region's datacenter; us-east writes its leases.
    keyspace = f"regions_{uuid.uuid4().hex[:8]}"
    engine = CassandraEngine(
        CassandraConfig(
            contact_points=(us["TIDINGS_CASSANDRA_CONTACT_POINTS"],),
            port=int(us["TIDINGS_CASSANDRA_PORT"]),
            local_dc="us-east",
            keyspace=keyspace,
            replication={r: 1 for r in REGIONS},
        )
    )
    await engine.start()
    try:
        shard = "us-east-0"
        created = await engine.leases.write(LeaseOp(OpKind.CREATE, shard, "us-east", 1, 1_000))
        assert created == (True, LeaseRow(shard, "us-east", 1, 1_000))

        def renew(until: int) -> LeaseOp:
            return LeaseOp(OpKind.RENEW, shard, "us-east", 1, until, expected_epoch=1)

        regions("kill", "ap-south")
        for name, address in addresses(ap).items():
            # A killed listener's socket can outlive its process by a few milliseconds.
            assert refuses_soon(address), f"ap-south's {name} at {address} still answers"
        for name, address in addresses(us).items():
            assert answers(address), f"us-east's {name} at {address} went with ap-south"
        # Two datacenters of three are a majority: the lease holds.
        assert await engine.leases.write(renew(2_000)) == (
            True,
            LeaseRow(shard, "us-east", 1, 2_000),
        )

        regions("kill", "eu-west")
        # us-east alone is cut off from the majority: it cannot renew...
        with pytest.raises(Unavailable):
            await engine.leases.write(renew(3_000))
        # ...while its own datacenter still serves it (its users' other data).
        await engine.analytics.add({("2026-12-07", "regions.test"): 1})
        assert await engine.analytics.day("2026-12-07") == {"regions.test": 1}
    finally:
        await engine.close()

    regions("up", "eu-west", "ap-south")
    assert topic in await topics(us)
    for region in ("eu-west", "ap-south"):
        for name, address in addresses(up[region]).items():
            assert answers(address), f"{region}'s {name} at {address} is not back"
    # The data of the killed regions is still there.
    got = kubectl(ap, "get", "configmap", mark, "-o", "jsonpath={.data.kept}")
    assert got.stdout == "yes"
    engine = CassandraEngine(
        CassandraConfig(
            contact_points=(eu["TIDINGS_CASSANDRA_CONTACT_POINTS"],),
            port=int(eu["TIDINGS_CASSANDRA_PORT"]),
            local_dc="eu-west",
            keyspace=keyspace,
            migrate=False,
        )
    )
    await engine.start()
    try:
        assert await engine.leases.read("us-east-0") == LeaseRow("us-east-0", "us-east", 1, 2_000)
        renewed = await engine.leases.write(
            LeaseOp(OpKind.RENEW, "us-east-0", "us-east", 1, 4_000, expected_epoch=1)
        )
        assert renewed[0]
    finally:
        await engine.close()


@pytest.mark.timeout(1200)
async def test_three_regions_under_load_lose_one_whole_and_fail_it_back(
    up: dict[str, dict[str, str]],
) -> None:
    result = await run_bench(
        "regions.py",
        "--clients=15",
        "--rate=3",
        "--before=8",
        "--after=30",
        "--after-failback=6",
        "--window=8",
        "--drain=90",
        "--kill=ap-south",
        "--partition=eu-west",
        "--partition-for=20",
        "--keep-up",  # the module's fixture takes the regions down
        "--quiet",
        "--json",
        timeout=1100,
    )
    assert result["lost"] == 0, result
    assert result["duplicates"] == 0, result
    # Clients are homed by their user ids: 15 leave ap-south none once in 440 runs.
    homed = result["homes"]
    assert set(homed) == set(REGIONS), result
    assert homed["ap-south"] > 0, result
    accepted = result["accepted"]
    assert accepted["before_kill"] > 0, result
    assert accepted["during_loss"] > 0, result
    assert accepted["after_failback"] > 0, result
    # The survivors took the lost region's shards and served its users meanwhile.
    assert result["takeover_s"] is not None, result
    assert result["first_served_s"] is not None, result
    # Back, it followed the takers' maps (nothing failed back by itself) until a
    # person's failback returned both its shards.
    assert result["fenced_on_return"] is True, result
    moved = [line for line in result["failback"] if line.startswith("moved shard ap-south-")]
    assert len(moved) == 2, result

    # eu-west cut off both ways (its API server, gateway and Kafka as the others reach
    # them, and theirs as it reaches them) for 20 s under load: the two others judged it
    # failed and took its shards, while it still held their leases in Cassandra; at no
    # sample did the regions hold more leases than there are shards.
    cut = result["partition"]
    assert cut["taken_over_while_cut"] is True, cut
    assert cut["samples"] >= 10, cut
    assert cut["double_held_samples"] == 0, cut
    assert cut["leases_held_max"] <= cut["shards"] == 6, cut
    # Mended, every map agrees again, and a person's failback brings its shards home.
    assert cut["maps_agreed_s"] is not None, cut
    assert len([m for m in cut["failback"] if m.startswith("moved shard eu-west-")]) == 2, cut
    assert cut["accepted"] > 0, cut
    assert cut["lost"] == 0, cut
