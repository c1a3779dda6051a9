"""Operator figures on the loopback control plane with the real Kafka and Cassandra.

    .venv/bin/python bench/operator.py [--shards 1000]
    .venv/bin/python bench/operator.py --failover [--window 30] [--heartbeat 5]

Prints: time from ``kubectl apply`` of a ChatRegion to ``Ready=True``; time to repair a
deleted child Deployment (until it exists again, and until the region is Ready again);
time until ``--shards`` MessageShards of one region exist and report status, and the
operator's resident memory before and after. ``--failover`` instead runs two regions
(8 shards each) with one operator process per region, SIGKILLs one and prints the time
until the other judges it failed and until its shards are fenced and moved, then the
time ``kubectl tidings failback`` takes. Starts what it needs with ``scripts/kube`` and
``scripts/deps`` (the first run on a machine builds the control plane).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from operator_support import (
    apply,
    condition,
    get_json,
    install_crds,
    region_manifest,
    running_operator,
)
from servers import KubeEnv, deps_up, kube_up


def wait(check: Any, what: str, timeout: float = 600.0, step: float = 0.1) -> float:
    """Seconds until ``check()`` is truthy."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(step)
    return time.monotonic() - started


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--failover", action="store_true", help="measure failover instead")
    parser.add_argument("--window", type=int, default=30, help="detection window, seconds")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat interval, s")
    args = parser.parse_args()

    env = kube_up()
    kube = KubeEnv(Path(env["TIDINGS_KUBECONFIG"]), Path(env["TIDINGS_HELM"]))
    kafka = deps_up("kafka")["KAFKA_BOOTSTRAP"]
    cassandra = {k: v for k, v in deps_up("cassandra").items() if k.startswith("TIDINGS_")}
    install_crds(kube)
    if args.failover:
        failover_figures(kube, kafka, cassandra, args.window, args.heartbeat)
        return
    run = uuid.uuid4().hex[:6]
    namespaces = [f"bench-{run}-a", f"bench-{run}-b"]
    for ns in namespaces:
        kube.kubectl("create", "namespace", ns)
    log = Path(tempfile.mkdtemp()) / "operator.log"
    try:
        with running_operator(kube, namespaces, log, interval=30.0) as op:
            print(f"operator up, RSS {mib(op.rss_bytes())}")
            name, ns = f"b{run}", namespaces[0]
            manifest = region_manifest(
                name, ns, kafka=kafka, cassandra=cassandra, keyspace=f"bench_{run}"
            )

            def ready() -> bool:
                body = get_json(kube, "-n", ns, "chatregion", name)
                cond = condition(body, "Ready")
                return bool(cond and cond["status"] == "True")

            started = time.monotonic()
            apply(kube, manifest)
            wait(ready, "the ChatRegion to turn Ready")
            print(f"apply -> Ready: {time.monotonic() - started:.2f} s (6 components, 4 shards)")

            gateway = f"{name}-gateway"
            before = (get_json(kube, "-n", ns, "deployment", gateway) or {})["metadata"]["uid"]
            started = time.monotonic()
            kube.kubectl("-n", ns, "delete", "deployment", gateway, "--wait=false")
            back = wait(
                lambda: (
                    (get_json(kube, "-n", ns, "deployment", gateway) or {})
                    .get("metadata", {})
                    .get("uid", before)
                    != before
                ),
                "the deleted Deployment to come back",
            )
            print(f"deleted Deployment -> recreated: {back:.2f} s")
            wait(lambda: not ready(), "the region to notice", timeout=30, step=0.05)
            wait(ready, "the region to be Ready again")
            print(f"deleted Deployment -> Ready again: {time.monotonic() - started:.2f} s")

            big, big_ns = f"s{run}", namespaces[1]
            manifest = region_manifest(
                big,
                big_ns,
                kafka=kafka,
                cassandra=cassandra,
                keyspace=f"bench_{run}_s",
                shards=args.shards,
            )
            rss_before = op.rss_bytes()
            started = time.monotonic()
            apply(kube, manifest)

            def shards_serving() -> bool:
                found = get_json(kube, "-n", big_ns, "messageshards") or {}
                items = found.get("items") or []
                serving = sum(1 for s in items if (s.get("status") or {}).get("phase") == "Serving")
                return len(items) == args.shards and serving == args.shards

            took = wait(shards_serving, f"{args.shards} MessageShards serving", step=2.0)
            print(f"{args.shards} MessageShards created and serving: {took:.1f} s")
            print(f"operator RSS: {mib(rss_before)} before, {mib(op.rss_bytes())} after")
            time.sleep(65)  # one shard resync period: steady state, not just the burst
            print(f"operator RSS after a resync period: {mib(op.rss_bytes())}")
            # While the operator runs: it carries out the regions' deletion policy.
            started = time.monotonic()
            for ns in namespaces:
                kube.kubectl("delete", "namespace", ns, "--wait=false")
            wait(
                lambda: not any(get_json(kube, "namespace", ns) for ns in namespaces),
                "the namespaces to go",
                step=1.0,
            )
            print(f"both namespaces deleted: {time.monotonic() - started:.1f} s")
    finally:
        for ns in namespaces:
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def failover_figures(
    kube: KubeEnv, kafka: str, cassandra: dict[str, str], window: int, heartbeat: float
) -> None:
    run = uuid.uuid4().hex[:6]
    ns = f"bench-{run}-fo"
    kube.kubectl("create", "namespace", ns)
    a, b = f"a{run}", f"b{run}"
    logs = Path(tempfile.mkdtemp())

    def operator(region: str) -> Any:
        return running_operator(
            kube,
            [ns],
            logs / f"{region}.log",
            "--region",
            region,
            "--heartbeat-interval",
            str(heartbeat),
            interval=30.0,
        )

    def region(name: str) -> dict[str, Any]:
        return get_json(kube, "-n", ns, "chatregion", name) or {}

    def health(name: str, peer: str) -> str | None:
        peers = (region(name).get("status") or {}).get("peers") or []
        return next((p["health"] for p in peers if p["name"] == peer), None)

    def owners(home: str) -> set[tuple[str, int]]:
        items = (get_json(kube, "-n", ns, "messageshards") or {}).get("items") or []
        return {
            (s["spec"]["owner"], s["spec"]["epoch"]) for s in items if s["spec"]["region"] == home
        }

    try:
        with operator(a):
            with operator(b) as op_b:
                for name, peer, first, last in ((a, b, 0, 511), (b, a, 512, 1023)):
                    apply(
                        kube,
                        region_manifest(
                            name,
                            ns,
                            kafka=kafka,
                            cassandra=cassandra,
                            keyspace=f"bench_{name}",
                            shards=8,
                            slotRange={"first": first, "last": last},
                            peers=[{"name": peer}],
                            failover={"policy": "Automatic", "detectionWindowSeconds": window},
                        ),
                    )
                wait(lambda: health(a, b) == "Healthy", "the regions to see each other")
                started = time.monotonic()
                op_b.process.kill()
                op_b.process.wait(10)
                failed = wait(lambda: health(a, b) == "Failed", "the peer to be judged failed")
                moved = wait(lambda: owners(b) == {(a, 2)}, "the shards to move")
                print(
                    f"failover (window {window} s, heartbeat {heartbeat} s, 8 shards): "
                    f"SIGKILL -> Failed {failed:.1f} s, -> shards moved "
                    f"{time.monotonic() - started:.1f} s ({moved:.2f} s after Failed)"
                )
            with operator(b):  # back, but its shards stay away until failback
                back = wait(lambda: health(a, b) == "Healthy", "the region to be back")
                print(f"operator restarted -> judged Healthy again: {back:.1f} s")
                started = time.monotonic()
                done = kube.kubectl("tidings", "-n", ns, "failback", b, plugins=True)
                took = time.monotonic() - started
                if owners(b) != {(b, 3)}:
                    raise SystemExit(f"failback did not bring every shard home:\n{done.stdout}")
                print(f"kubectl tidings failback of 8 shards: {took:.2f} s")
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


if __name__ == "__main__":
    main()
