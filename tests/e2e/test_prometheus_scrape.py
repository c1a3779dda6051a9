"""A real Prometheus (``scripts/prometheus up``) scrapes a real ``tidings up`` process
through file_sd, evaluates the chart's rules on what it scraped, and answers over its
HTTP API: a delivery made through the SDK shows up as a sample and in the SLO recording
rule of its region."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

import procs
from harness import body_text, ciphertexts, online, register
from prometheus_support import RULES, Prometheus, prometheus_env, scrape_address

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
        address, path = scrape_address(proc.url)
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
