"""A real alert in the real Prometheus: the delivery workers die under load, the chart's
delivery lag alert goes pending then firing; they come back, it resolves.

Everything is real: ``tidings serve`` processes (a gateway, two delivery workers) on
Kafka, Cassandra and Redis, the operator reconciling the region's ChatRegion on the
loopback control plane and exporting each MessageShard's lag from Kafka, and the
Prometheus of ``scripts/prometheus`` scraping the operator and evaluating the alert.
The alert's expression is the chart's own (``TidingsDeliveryLagGrowing``); only its
``delta`` window and its ``for`` are shortened so that the test takes a minute, not
ten. The load's messages are counted too: none lost, none duplicated.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import procs
from harness import register
from operator_support import (
    OperatorProcess,
    apply,
    install_crds,
    region_manifest,
    running_operator,
)
from prometheus_support import RULES, Prometheus, prometheus_env
from servers import KubeEnv
from traffic import traffic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ALERT = "TidingsDeliveryLagGrowing"
WINDOW = "30s"
"""The alert's ``delta`` window in the test (the chart's: 5m). The operator here reads
the lag every 2 s (``--shard-interval``; 60 s by default), so the window holds many."""
FOR = "10s"
"""The alert's ``for`` in the test (the chart's: 5m)."""
SENDERS, RECEIVERS, RATE = 2, 4, 8.0


def fast_copy_of_the_chart_alert(test_id: str) -> dict[str, Any]:
    """A rule group holding the chart's alert with its windows shortened, labelled
    ``fault_test`` so that only this test's instance of it is looked at."""
    groups = yaml.safe_load((RULES / "alerts.yaml").read_text())["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == ALERT]
    expr = rule["expr"].replace("[5m]", f"[{WINDOW}]")
    assert expr != rule["expr"], "the chart's alert no longer has a 5m window to shorten"
    fast = {**rule, "expr": expr, "for": FOR, "labels": {**rule["labels"], "fault_test": test_id}}
    return {"groups": [{"name": f"fault-test-{test_id}", "interval": "1s", "rules": [fast]}]}


@pytest.fixture
def prometheus_with_fast_alert() -> Iterator[tuple[Prometheus, str]]:
    env = prometheus_env("up")
    prometheus = Prometheus(
        env["TIDINGS_PROMETHEUS_URL"], Path(env["TIDINGS_PROMETHEUS_TARGETS_DIR"])
    )
    test_id = uuid.uuid4().hex[:8]
    path = Path(env["TIDINGS_PROMETHEUS_RULES_DIR"]) / f"fault-test-{test_id}.yaml"
    path.write_text(yaml.safe_dump(fast_copy_of_the_chart_alert(test_id)))
    reload(prometheus)
    try:
        prometheus.until(
            "the test's rule group to load",
            lambda: f"fault-test-{test_id}" in rule_groups(prometheus),
        )
        yield prometheus, test_id
    finally:
        path.unlink(missing_ok=True)
        reload(prometheus)


def reload(prometheus: Prometheus) -> None:
    httpx.post(f"{prometheus.url}/-/reload", timeout=30).raise_for_status()


def rule_groups(prometheus: Prometheus) -> set[str]:
    r = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10)
    r.raise_for_status()
    return {g["name"] for g in r.json()["data"]["groups"]}


def alert_state(prometheus: Prometheus, test_id: str, namespace: str) -> str:
    """``inactive``, ``pending`` or ``firing``: the test's alert for its namespace."""
    r = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=10)
    r.raise_for_status()
    for alert in r.json()["data"]["alerts"]:
        labels = alert["labels"]
        if (labels.get("alertname"), labels.get("fault_test"), labels.get("namespace")) == (
            ALERT,
            test_id,
            namespace,
        ):
            return str(alert["state"])
    return "inactive"


async def until_state(
    prometheus: Prometheus, test_id: str, namespace: str, wanted: str, timeout: float
) -> float:
    """The monotonic time at which the alert is first seen in ``wanted``."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        state = await asyncio.to_thread(alert_state, prometheus, test_id, namespace)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == wanted:
            return time.monotonic()
        if time.monotonic() > deadline:
            pytest.fail(f"{ALERT} not {wanted} within {timeout:.0f}s; states seen: {seen}")
        await asyncio.sleep(0.25)


@pytest.fixture
def operator_watching(kube_env: KubeEnv, tmp_path: Path) -> Iterator[tuple[OperatorProcess, str]]:
    install_crds(kube_env)
    namespace = f"fault-{uuid.uuid4().hex[:8]}"
    kube_env.kubectl("create", "namespace", namespace)
    try:
        with running_operator(
            kube_env, [namespace], tmp_path / "operator.log", "--shard-interval=2", interval=2.0
        ) as op:
            try:
                yield op, namespace
            finally:
                # While the operator runs: its finalizer deletes the region's topics and
                # keyspace (deletionPolicy Delete) and lets the region go.
                kube_env.kubectl(
                    *("-n", namespace, "delete", "chatregions", "--all", "--timeout=120s"),
                    check=False,
                )
    finally:
        kube_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


async def test_killing_the_delivery_workers_fires_the_lag_alert_and_restarting_resolves_it(
    prometheus_with_fast_alert: tuple[Prometheus, str],
    operator_watching: tuple[OperatorProcess, str],
    kube_env: KubeEnv,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
    distributed_env: dict[str, str],
    tmp_path: Path,
) -> None:
    prometheus, test_id = prometheus_with_fast_alert
    op, namespace = operator_watching
    region = f"f{uuid.uuid4().hex[:8]}"
    keyspace = f"fault_{region}"
    apply(
        kube_env,
        region_manifest(
            region,
            namespace,
            kafka=kafka_bootstrap,
            cassandra=cassandra_env,
            keyspace=keyspace,
            partitions=4,
            deletion_policy="Delete",
        ),
    )
    prometheus.scrape(
        f"operator-{test_id}", [f"127.0.0.1:{op.metrics_port}"], {"component": "operator"}
    )
    lag = f'tidings_operator_consumer_lag{{kind="MessageShard",namespace="{namespace}"}}'
    try:
        # The operator made the region's topics and reads its shards' lag: the platform
        # may start on them.
        await asyncio.to_thread(
            prometheus.until, "the shards' lag to be scraped", lambda: prometheus.query(lag), 120
        )
        # The keyspace the operator made for the region: accounts of this test only.
        env = {
            **distributed_env,
            "TIDINGS_REGION": region,
            "TIDINGS_PARTITIONS": "4",
            "TIDINGS_CASSANDRA_KEYSPACE": keyspace,
        }
        data, log = tmp_path / "data", tmp_path / "tidings.log"
        gateway = await procs.start(["serve", "gateway"], data, log, env)
        workers = [await procs.start(["serve", "delivery"], data, log, env) for _ in range(2)]
        try:
            gw = gateway.gateway(data)
            senders = [await register(gw) for _ in range(SENDERS)]
            receivers = [await register(gw) for _ in range(RECEIVERS)]
            load = traffic(senders, receivers, [gw], RATE)
            load.start()
            await asyncio.sleep(3.0)  # the load flows, the workers keep up
            assert await asyncio.to_thread(alert_state, prometheus, test_id, namespace) == (
                "inactive"
            )

            killed = time.monotonic()
            for worker in workers:
                worker.kill()
                await worker.wait()
            pending = await until_state(prometheus, test_id, namespace, "pending", 90)
            firing = await until_state(prometheus, test_id, namespace, "firing", 60)
            # The oldest waiting envelope ages while nobody delivers (read from Kafka).
            age = f'max(tidings_operator_oldest_undelivered_age_seconds{{namespace="{namespace}"}})'
            (aged,) = await asyncio.to_thread(
                prometheus.until,
                "the oldest undelivered age to pass 5 s",
                lambda: prometheus.query(f"{age} > 5"),
                30,
            )

            restarted = time.monotonic()
            workers = [await procs.start(["serve", "delivery"], data, log, env) for _ in range(2)]
            resolved = await until_state(prometheus, test_id, namespace, "inactive", 90)
            print(
                f"\n{ALERT} (delta window {WINDOW}, for {FOR}), seconds after the workers "
                f"were killed:\n  pending   {pending - killed:6.1f}"
                f"\n  firing    {firing - killed:6.1f} (oldest waiting envelope "
                f"{float(aged['value'][1]):.0f} s old)"
                f"\n  restarted {restarted - killed:6.1f}"
                f"\n  resolved  {resolved - killed:6.1f} ({resolved - restarted:.1f} after "
                "the restart)"
            )
            tally = await load.finish(settle_timeout=60.0)
        finally:
            for proc in [gateway, *workers]:
                if proc.process.returncode is None:
                    proc.kill()
                    await proc.wait()
    finally:
        prometheus.forget(f"operator-{test_id}")
    print(tally.summary())
    assert killed < pending < firing < restarted < resolved
    assert tally.sent >= 50, tally.summary()
    assert tally.lost == 0, f"{tally.summary()}; missing {tally.missing()}"
    assert tally.duplicates == 0, tally.summary()
