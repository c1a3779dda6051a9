"""kopf peering between two ``tidings-operator run`` processes on one namespace: only the
one with the higher ``--priority`` acts; the other pauses and takes over when it leaves.
The pause and the resume are visible in kubectl (Events on the region) and in the paused
operator's metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helm_support import CHART_CRDS
from operator_support import (
    OperatorProcess,
    apply,
    eventually,
    get_json,
    install_crds,
    ready_now,
    region_manifest,
    running_operator,
)
from servers import KubeEnv

pytestmark = pytest.mark.slow

PEERING = "tidings-test"


@pytest.fixture
def namespace(kube_env: KubeEnv) -> Iterator[str]:
    install_crds(kube_env)
    for crd in ("kopfpeerings.kopf.dev.yaml", "clusterkopfpeerings.kopf.dev.yaml"):
        kube_env.kubectl("apply", "--server-side", "-f", str(CHART_CRDS / crd))
        kube_env.kubectl(
            "wait", "--for=condition=Established", "-f", str(CHART_CRDS / crd), "--timeout=60s"
        )
    name = f"peer-{uuid.uuid4().hex[:8]}"
    kube_env.kubectl("create", "namespace", name)
    apply(
        kube_env,
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": PEERING, "namespace": name},
        },
    )
    yield name
    kube_env.kubectl("delete", "namespace", name, "--wait=false", check=False)


def region_reconciles(op: OperatorProcess) -> float:
    """ChatRegion reconciles this operator has run, whatever their result."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(op.metrics())
        if family.name == "tidings_operator_reconcile"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("kind") == "ChatRegion"
    )


def peering_paused(op: OperatorProcess, namespace: str) -> float | None:
    """``tidings_operator_peering_paused`` of the operator for the namespace's peering."""
    for family in text_string_to_metric_families(op.metrics()):
        if family.name == "tidings_operator_peering_paused":
            for sample in family.samples:
                if sample.labels.get("namespace") == namespace:
                    return sample.value
    return None


def region_events(kube: KubeEnv, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    listed = get_json(
        kube,
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.kind=ChatRegion,involvedObject.name={name},reason={reason}",
    )
    found: list[dict[str, Any]] = (listed or {}).get("items", [])
    return found


def settled(read: Callable[[], float]) -> float:
    """The value once it stays the same over two seconds (a reconcile that was running
    when the pause began is let finish)."""
    previous = read()

    def same() -> float | None:
        nonlocal previous
        time.sleep(2)
        now = read()
        if now == previous:
            return now
        previous = now
        return None

    return eventually(same, "the paused operator's reconcile count to settle")


@pytest.mark.timeout(300)
def test_only_the_higher_priority_operator_acts_and_the_other_takes_over_when_it_leaves(
    kube_env: KubeEnv,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
    namespace: str,
    tmp_path: Path,
) -> None:
    name = f"r{namespace.removeprefix('peer-')}"
    manifest = region_manifest(
        name,
        namespace,
        kafka=kafka_bootstrap,
        cassandra=cassandra_env,
        keyspace=f"op_{namespace.removeprefix('peer-')}",
    )
    gateway = f"{name}-gateway"

    def ready() -> bool:
        return ready_now(get_json(kube_env, "-n", namespace, "chatregion", name))

    def scale_gateway(replicas: int) -> None:
        manifest["spec"]["components"]["gateway"]["replicas"] = replicas
        apply(kube_env, manifest)
        eventually(
            lambda: (
                (get_json(kube_env, "-n", namespace, "deployment", gateway) or {})
                .get("spec", {})
                .get("replicas")
                == replicas
            ),
            f"the gateway Deployment to be scaled to {replicas}",
        )

    peered = ("--peering", PEERING)
    with running_operator(
        kube_env, [namespace], tmp_path / "low.log", *peered, "--priority", "10", interval=3.0
    ) as low:
        apply(kube_env, manifest)
        eventually(ready, "the ChatRegion to turn Ready under the only operator")

        with running_operator(
            kube_env, [namespace], tmp_path / "high.log", *peered, "--priority", "20", interval=3.0
        ) as high:
            eventually(
                lambda: "Pausing operations in favour of" in low.log_text(),
                "the lower-priority operator to pause",
            )
            (paused,) = eventually(
                lambda: region_events(kube_env, namespace, name, "OperatorPaused"),
                "an OperatorPaused Event on the region",
            )
            assert paused["type"] == "Normal"
            assert "(priority 10) paused in peering tidings-test" in paused["message"]
            assert "(priority 20)" in paused["message"], paused["message"]
            assert peering_paused(low, namespace) == 1
            paused_at = settled(lambda: region_reconciles(low))
            scale_gateway(2)
            eventually(ready, "the ChatRegion to turn Ready again")
            assert region_reconciles(high) > 0
            # The timer's interval is 3 s: a paused operator would have run some by now.
            assert region_reconciles(low) == paused_at

        eventually(
            lambda: "Resuming operations after the pause" in low.log_text(),
            "the lower-priority operator to resume once the other left",
        )
        (resumed,) = eventually(
            lambda: region_events(kube_env, namespace, name, "OperatorResumed"),
            "an OperatorResumed Event on the region",
        )
        assert "(priority 10) resumed" in resumed["message"]
        assert peering_paused(low, namespace) == 0
        scale_gateway(3)
        assert region_reconciles(low) > paused_at
