"""The platform the operator provisions, run for real: ``helm install`` puts the operator
on the real node as a pod from the image, a ChatRegion on the session's Kafka, Cassandra,
Redis and S3 becomes real gateway, router, media, presence, delivery and analytics
containers there (host network, a port pair each), and clients on the host use them.

One region for the module (bringing it up is most of the cost); the tests run in file
order, the one that breaks the image last. Every wait is on a positive signal with a
bound."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import procs
from harness import new_phone, register
from helm_support import Helm
from operator_support import apply, condition, eventually
from providers.fcm_server import run_fcm_server
from providers.tls import make_tls
from push_support import send_many, set_token
from realpods import (
    COMPONENTS,
    Ports,
    RealRegion,
    SharedGateway,
    create_s3_secret,
    elapsed_since,
    install_operator,
    region_body,
    run_fcm_pool,
)
from servers import KubeEnv, RealNode
from traffic import traffic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def region(
    kube_env: KubeEnv,
    real_node: RealNode,
    tidings_image: str,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
    redis_url: str,
    s3_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RealRegion]:
    namespace = f"rp-{uuid.uuid4().hex[:10]}"
    kube_env.kubectl("create", "namespace", namespace)
    helm = Helm(kube_env, tmp_path_factory.mktemp("helm"))
    found = RealRegion(
        kube_env,
        real_node,
        namespace,
        f"r{uuid.uuid4().hex[:8]}",
        tidings_image,
        Ports.free(COMPONENTS),
    )
    try:
        create_s3_secret(kube_env, namespace, s3_env)
        with install_operator(helm, namespace, tidings_image, real_node) as operator_pod:
            assert operator_pod["spec"]["nodeName"] == real_node.name
            found.operator_pod = operator_pod["metadata"]["name"]
            try:
                start = time.monotonic()
                apply(kube_env, region_body(found, kafka_bootstrap, cassandra_env, s3_env))
                found.wait_ready()
                found.ready_seconds = elapsed_since(start)
                print(f"\nChatRegion apply -> Ready with real pods: {found.ready_seconds} s")
                yield found
            finally:
                # While the operator runs: its finalizers drop the region's data.
                kube_env.kubectl(
                    "delete", "pushpool,chatregion", "-n", namespace, "--all",
                    "--timeout=120s", timeout=130, check=False,
                )  # fmt: skip
    finally:
        kube_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_every_component_is_a_ready_container_on_the_real_node(region: RealRegion) -> None:
    """Each component's pod runs on the real node, on the host's network at its own
    port, Ready (its readiness probe passed with the mounted shard map) and never
    restarted; the ChatRegion counts every component ready."""
    status = region.body()["status"]
    assert status["componentsReady"] == f"{len(COMPONENTS)}/{len(COMPONENTS)}", status
    memory = {}
    for component in COMPONENTS:
        pod = region.pod(component)
        assert pod["spec"]["nodeName"] == region.node.name
        assert pod["spec"]["hostNetwork"] is True
        (container,) = pod["status"]["containerStatuses"]
        assert container["ready"], container
        assert container["restartCount"] == 0, container
        assert container["containerID"].startswith("containerd://")
        (spec,) = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in spec["env"]}
        assert env["TIDINGS_PORT"] == str(region.ports.client[component])
        memory[component] = region.rss_kib(component) // 1024
    memory["operator"] = region.pod_rss_kib(region.operator_pod) // 1024
    print(f"\nRSS (MiB) of each real pod: {memory}")


async def test_two_cli_users_exchange_a_message_and_a_file_through_the_gateway(
    region: RealRegion, tmp_path: Path
) -> None:
    """The ``tidings`` CLI on the host: two users register (the code read from the
    gateway pod's dev-mode outbox), then an end-to-end encrypted text and file."""
    gateway = region.gateway
    code_command = f"{shlex.quote(procs.TIDINGS)} code {{phone}} --data-dir {gateway.data_dir}"

    async def cli(phone: str, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            procs.TIDINGS, *args, "--server", gateway.url, "--home", str(tmp_path / phone),
            "--phone", phone,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, f"tidings {args}: {err.decode()}"
        return out.decode()

    alice, bob = new_phone(), new_phone()
    alice_id = (await cli(alice, "register", "--code-command", code_command)).strip()
    bob_id = (await cli(bob, "register", "--code-command", code_command)).strip()
    sent = (await cli(alice, "send", "--to", bob_id, "hello from a real pod")).strip()
    document = tmp_path / "notes.bin"
    document.write_bytes(bytes(range(256)) * 40)
    file_sent = (await cli(alice, "send-file", "--to", bob_id, str(document))).strip()

    rows: list[list[str]] = []
    deadline = time.monotonic() + 60
    while len(rows) < 2:
        assert time.monotonic() < deadline, f"bob only received {rows}"
        rows += [line.split("\t") for line in (await cli(bob, "inbox")).splitlines()]
    assert rows[0] == [sent, alice_id, alice_id, "text", "hello from a real pod"]
    assert rows[1][:4] == [file_sent, alice_id, alice_id, "file"], rows
    fetched = tmp_path / "fetched.bin"
    await cli(bob, "fetch-file", file_sent, "--out", str(fetched))
    assert fetched.read_bytes() == document.read_bytes()


async def test_a_killed_container_restarts_under_load_with_nothing_lost_or_duplicated(
    region: RealRegion,
) -> None:
    """Steady sends while the delivery container, then the gateway's, is SIGKILLed
    through containerd: the kubelet restarts each, and every accepted message arrives
    exactly once (as the user sees it)."""
    gateway = region.gateway
    senders = [await register(gateway) for _ in range(2)]
    receivers = [await register(gateway) for _ in range(2)]
    load = traffic(senders, receivers, [gateway], rate_per_sender=5.0)
    load.start()

    def accepted(count: int) -> Callable[[], bool]:
        return lambda: load.tally.sent >= count

    try:
        await eventually_async(accepted(10), "sends accepted before the kills")
        for component in ("delivery", "gateway"):
            restarts = region.kill_container(component)
            killed_at = load.tally.sent
            await asyncio.to_thread(region.wait_restarted, component, restarts)
            await eventually_async(
                accepted(killed_at + 10), f"sends accepted after {component} restarted"
            )
    finally:
        tally = await load.finish(settle_timeout=90.0)
    print(f"\nkilled delivery, then gateway: {tally.summary()}")
    assert tally.lost == 0, tally.summary()
    assert tally.duplicates == 0, tally.summary()


async def eventually_async(check: Callable[[], object], what: str, timeout: float = 120.0) -> None:
    """Until ``check()`` is truthy, yielding to the event loop (the load and the FCM
    server run on it); fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def test_a_push_pool_worker_pod_pushes_through_the_local_fcm_server(
    region: RealRegion, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A PushPool's worker runs as a real pod beside the region's (the region's
    placement, its own ports) and wakes an offline device through the local FCM and
    OAuth2 server, verifying it with the CA from a Secret."""
    tls = make_tls(tmp_path_factory.mktemp("fcm-tls"))
    async with run_fcm_server(tls) as fcm:
        ports = Ports.free(("push",))
        await asyncio.to_thread(run_fcm_pool, region, fcm, ports)
        pod = region.pod("push")
        assert pod["spec"]["nodeName"] == region.node.name
        print(f"\nRSS (MiB) of the push worker pod: {region.rss_kib('push') // 1024}")

        gateway = region.gateway
        alice, bob = await register(gateway), await register(gateway)
        token = "bob-real-pod-token"
        await set_token(bob, token)
        await send_many(alice, bob, 1, "wake up")

        def pushed() -> list[dict[str, object]]:
            return [a.message for a in fcm.accepted if a.message.get("token") == token]

        await eventually_async(pushed, "a push for bob at the FCM server", timeout=90)
        assert pushed()[0]["data"] == {"type": "wake"}
        assert "wake up" not in json.dumps(pushed())


async def test_a_second_gateway_pod_on_the_one_real_node_serves_clients(
    region: RealRegion,
) -> None:
    """Scaled to two on the single real node, the gateway's second pod is scheduled (its
    pods declare no host ports), shares the client port (``SO_REUSEPORT``), is Ready by
    a probe of its own process, and serves clients: users registered through the one
    port until each pod's own ``/metrics`` (the second on the operations port it wrote)
    counts a registration. Scaled back, the region is Ready with one."""
    (first,) = region.pods("gateway")
    started = time.monotonic()
    await asyncio.to_thread(set_gateway_replicas, region, 2)
    try:
        pods = await asyncio.to_thread(
            eventually, lambda: two_ready_gateways(region), "a second gateway pod Ready", 180
        )
        ready_seconds = elapsed_since(started)
        (second,) = [p for p in pods if p["metadata"]["uid"] != first["metadata"]["uid"]]
        assert second["spec"]["nodeName"] == region.node.name
        assert second["spec"]["hostNetwork"] is True
        (container,) = second["spec"]["containers"]
        assert "ports" not in container  # a host port each: the scheduler's one per node
        assert container["readinessProbe"]["exec"]["command"][-1] == "/readyz"
        await asyncio.to_thread(region.wait_ready, 120)
        ops_urls = [region.pod_ops_url(p) for p in (first, second)]
        assert ops_urls[0] == f"http://127.0.0.1:{region.ports.ops['gateway']}"
        assert ops_urls[1] != ops_urls[0]
        before = [await registrations(url) for url in ops_urls]
        shared = SharedGateway(
            f"http://127.0.0.1:{region.ports.client['gateway']}",
            region.pod_data_dir(first),
            data_dirs=(region.pod_data_dir(first), region.pod_data_dir(second)),
        )
        users = 0
        while not all([await registrations(u) > b for u, b in zip(ops_urls, before, strict=True)]):
            assert users < 40, f"after {users} users: {before} -> {ops_urls}"
            await register(shared)  # a new connection each, which the kernel places
            users += 1
        memory = [region.pod_rss_kib(p["metadata"]["name"]) // 1024 for p in (first, second)]
        print(
            f"\nscale gateway to 2 -> second pod Ready: {ready_seconds} s; both pods served "
            f"after {users} users; RSS (MiB) of the two gateway pods: {memory}"
        )
    finally:
        await asyncio.to_thread(set_gateway_replicas, region, 1)
    await asyncio.to_thread(region.wait_ready, 120)
    await asyncio.to_thread(eventually, lambda: len(region.pods("gateway")) == 1, "one gateway")


def two_ready_gateways(region: RealRegion) -> list[dict[str, Any]] | None:
    pods = region.pods("gateway")
    ready = [
        p for p in pods
        if any(s.get("ready") for s in p.get("status", {}).get("containerStatuses") or [])
    ]  # fmt: skip
    return pods if len(ready) == 2 else None


async def registrations(ops_url: str) -> float:
    """Registrations one gateway process served, as its ``/metrics`` counts them."""
    async with httpx.AsyncClient(base_url=ops_url, timeout=10.0) as http:
        text = (await http.get("/metrics")).text
    prefix = 'tidings_http_requests_total{method="POST",route="/v1/auth/register"'
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def set_gateway_replicas(region: RealRegion, replicas: int) -> None:
    patch = {"spec": {"components": {"gateway": {"replicas": replicas}}}}
    region.kube.kubectl(
        "patch", "chatregion", region.name, "-n", region.namespace, "--type=merge",
        "-p", json.dumps(patch),
    )  # fmt: skip


def test_a_wrong_image_is_a_condition_on_the_chat_region(region: RealRegion) -> None:
    """The image of the region points at nothing the node has: the replaced pods cannot
    start, and the ChatRegion says so in a condition naming the image problem (not only
    in pod events). Last in the module: the region stays broken."""
    wrong = f"{region.image.rpartition(':')[0]}:missing-{uuid.uuid4().hex[:6]}"
    region.kube.kubectl(
        "patch", "chatregion", region.name, "-n", region.namespace, "--type=merge",
        "-p", json.dumps({"spec": {"image": wrong}}),
    )  # fmt: skip

    def image_condition() -> dict[str, str] | None:
        body = region.body()
        for kind in ("Degraded", "Ready", "Progressing"):
            cond = condition(body, kind)
            if cond and "ErrImageNeverPull" in (cond.get("reason", "") + cond.get("message", "")):
                return cond
        return None

    cond = eventually(image_condition, "a condition naming the image failure", timeout=180)
    print(f"\nwrong image: {cond}")
    assert wrong in cond["message"], cond
