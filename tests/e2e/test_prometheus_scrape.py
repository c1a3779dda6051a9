"""A real Prometheus (``scripts/prometheus up``) scrapes real platform processes through
file_sd — ``tidings up`` on the embedded engines, and a distributed region (a gateway,
router, delivery worker and presence process on Kafka, Cassandra, Redis and S3) —
evaluates the chart's rules on what it scraped, and answers over its HTTP API: a
delivery made through the SDK shows up as samples of each hop and in the SLO recording
rule of its region. The operator is scraped on its metrics port."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

import procs
from harness import Gateway, body_text, ciphertexts, online, register
from operator_support import install_crds, running_operator
from prometheus_support import RULES, Prometheus, prometheus_env, scrape_address
from servers import KubeEnv, unique_region

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prometheus() -> Prometheus:
    env = prometheus_env("up")
    rules_dir = Path(env["TIDINGS_PROMETHEUS_RULES_DIR"])
    for path in RULES.glob("*.yaml"):
        shutil.copyfile(path, rules_dir / f"tidings-chart-{path.name}")
    httpx.post(f"{env['TIDINGS_PROMETHEUS_URL']}/-/reload", timeout=30).raise_for_status()
    return Prometheus(env["TIDINGS_PROMETHEUS_URL"], Path(env["TIDINGS_PROMETHEUS_TARGETS_DIR"]))


def test_the_chart_rules_are_loaded(prometheus: Prometheus) -> None:
    r = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10)
    r.raise_for_status()
    groups = {g["name"] for g in r.json()["data"]["groups"]}
    assert {"tidings-slo", "tidings-slo-burn", "tidings-delivery", "tidings-operator"} <= groups


async def test_prometheus_scrapes_a_delivery_and_records_its_region_slo(
    prometheus: Prometheus, tmp_path: Path
) -> None:
    region = f"prom-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    async with procs.running(["up"], data, tmp_path / "tidings.log") as proc:
        address, path = scrape_address(proc.url, proc.ops_url)
        prometheus.scrape(region, [address], {"region": region, "__metrics_path__": path})
        try:
            await asyncio.to_thread(
                prometheus.until,
                f"{address} to be scraped",
                lambda: prometheus.query(f'up{{region="{region}"}} == 1'),
            )
            gw = proc.gateway(data)
            alice, bob = await register(gw), await register(gw)
            bob_ws = await online(bob)
            body = {
                "id": "m1",
                "to": {"user": bob.user_id},
                "ciphertexts": ciphertexts({bob.user_id: [1]}, "seen by Prometheus"),
            }
            async with alice.http() as http:
                assert (await http.post("/v1/messages", json=body)).status_code == 200
            (delivery,) = await bob_ws.deliveries(1)
            assert body_text(delivery) == "seen by Prometheus"
            await bob_ws.close()

            count = await asyncio.to_thread(
                prometheus.until,
                "the delivery's latency sample",
                lambda: prometheus.query(
                    f'tidings_delivery_latency_seconds_count{{region="{region}"}} >= 1'
                ),
            )
            assert count[0]["metric"]["job"] == "tidings"
            accepted = prometheus.query(f'tidings_messages_accepted_total{{region="{region}"}}')
            assert [float(s["value"][1]) for s in accepted] == [1.0]
            # The SLO recording rule, evaluated by Prometheus on the scraped histogram.
            p99 = await asyncio.to_thread(
                prometheus.until,
                "the region's p99 recording",
                lambda: prometheus.query(
                    f'region:tidings_delivery_latency_seconds:p99_5m{{region="{region}"}} >= 0'
                ),
            )
            assert 0 <= float(p99[0]["value"][1]) <= 1.0
        finally:
            prometheus.forget(region)


async def deliver_one(gw: Gateway, text: str) -> None:
    """alice sends bob (connected) one message over REST; bob gets it."""
    alice, bob = await register(gw), await register(gw)
    bob_ws = await online(bob)
    body = {
        "id": "m1",
        "to": {"user": bob.user_id},
        "ciphertexts": ciphertexts({bob.user_id: [1]}, text),
    }
    async with alice.http() as http:
        sent = await http.post("/v1/messages", json=body)
        assert sent.status_code == 200, sent.text
    (delivery,) = await bob_ws.deliveries(1)
    assert body_text(delivery) == text
    await bob_ws.close()


async def test_prometheus_scrapes_every_process_of_a_distributed_region(
    prometheus: Prometheus, tmp_path: Path, distributed_env: dict[str, str]
) -> None:
    region = unique_region()
    env = {**distributed_env, "TIDINGS_REGION": region}
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    running: dict[str, procs.Proc] = {}
    try:
        for component in ("gateway", "router", "delivery", "presence"):
            proc = await procs.start(["serve", component], data, log, env)
            running[component] = proc
            address, path = scrape_address(proc.url, proc.ops_url)
            labels = {"region": region, "component": component, "__metrics_path__": path}
            prometheus.scrape(f"{region}-{component}", [address], labels)
        ups = await asyncio.to_thread(
            prometheus.until,
            "the four processes to be scraped",
            lambda: len(prometheus.query(f'up{{region="{region}"}} == 1')) == 4,
        )
        assert ups
        await deliver_one(running["gateway"].gateway(data), "scraped on every hop")

        def by_component(expr: str) -> dict[str, float]:
            samples = prometheus.query(expr)
            return {s["metric"]["component"]: float(s["value"][1]) for s in samples}

        # Accepted at the gateway, stored by the delivery worker, delivered on the socket.
        stored = await asyncio.to_thread(
            prometheus.until,
            "the stored envelope",
            lambda: by_component(f'tidings_inbox_writes_total{{region="{region}"}} >= 1'),
        )
        assert set(stored) == {"delivery"}
        latency = await asyncio.to_thread(
            prometheus.until,
            "the delivery's latency sample",
            lambda: by_component(
                f'tidings_delivery_latency_seconds_count{{region="{region}"}} >= 1'
            ),
        )
        assert latency == {"gateway": 1.0}
        accepted = prometheus.query(f'sum(tidings_messages_accepted_total{{region="{region}"}})')
        assert float(accepted[0]["value"][1]) == 1.0
        # A counter's first scrape shows no increase (it appeared at 1): one more send
        # gives the ratio a rate to divide.
        await deliver_one(running["gateway"].gateway(data), "and once more")
        ratio = await asyncio.to_thread(
            prometheus.until,
            "the region's send success ratio",
            lambda: prometheus.query(
                f'region:tidings_send_success:ratio_rate5m{{region="{region}"}} == 1'
            ),
        )
        assert ratio
    finally:
        for component, proc in running.items():
            prometheus.forget(f"{region}-{component}")
            if proc.process.returncode is None:
                proc.kill()
                await proc.wait()


def test_prometheus_scrapes_the_operator(
    prometheus: Prometheus, kube_env: KubeEnv, tmp_path: Path
) -> None:
    install_crds(kube_env)
    name = f"operator-{uuid.uuid4().hex[:8]}"
    namespace = f"prom-{uuid.uuid4().hex[:8]}"  # nothing to reconcile: metrics only
    with running_operator(kube_env, [namespace], tmp_path / "operator.log") as op:
        prometheus.scrape(
            name, [f"127.0.0.1:{op.metrics_port}"], {"component": "operator", "source": name}
        )
        try:
            queue = prometheus.until(
                "the operator's queue gauge",
                lambda: prometheus.query(f'tidings_operator_queue_active_keys{{source="{name}"}}'),
            )
            assert [float(s["value"][1]) for s in queue] == [0.0]
        finally:
            prometheus.forget(name)
