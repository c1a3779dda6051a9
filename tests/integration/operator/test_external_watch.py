"""Kafka topics and the Cassandra keyspace watched, not only resynced: a topic deleted,
a keyspace or one of its tables dropped behind the operator's back turns the region not
Ready (reason ``TopicMissing`` / ``KeyspaceMissing`` / ``TableMissing``) until the
operator has recreated it and read it back, then Ready again; all within seconds, long
before the external resync (60 s).

The region's status is followed with a watch (``kubectl get --watch``), so a not-Ready
spell of a fraction of a second is seen, not missed between two polls. The figures
printed are measured on this run, never asserted (the bounds are what prove it)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

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
from tidings_operator.cassandra_admin import connect

pytestmark = pytest.mark.slow

NAMESPACE_PREFIX = "xw-"
CHECK_INTERVAL = "1"
"""--topic-check-interval and --keyspace-check-interval of the operator under test."""
RESYNC_BOUND = 30.0
"""Every wait for a repair stays under the 60 s external resync: only the watch can
meet it."""


@pytest.fixture(scope="module")
def operator(
    kube_env: KubeEnv,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    install_crds(kube_env)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(
        kube_env,
        [f"{NAMESPACE_PREFIX}*"],
        log,
        "--topic-check-interval",
        CHECK_INTERVAL,
        "--keyspace-check-interval",
        CHECK_INTERVAL,
        interval=30.0,
    ) as op:
        yield op


@dataclass
class Region:
    kube: KubeEnv
    name: str
    namespace: str
    keyspace: str

    def body(self) -> dict[str, Any]:
        found = get_json(self.kube, "-n", self.namespace, "chatregion", self.name)
        assert found is not None, f"ChatRegion {self.name} is gone"
        return found

    def ready(self) -> dict[str, Any] | None:
        body = self.body()
        return body if ready_now(body) else None

    def events(self, reason: str) -> list[dict[str, Any]]:
        found = get_json(
            self.kube,
            "-n",
            self.namespace,
            "events",
            f"--field-selector=involvedObject.name={self.name},reason={reason}",
        )
        return list((found or {}).get("items") or [])


@pytest.fixture
def region(
    kube_env: KubeEnv,
    operator: OperatorProcess,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
) -> Iterator[Region]:
    suffix = uuid.uuid4().hex[:8]
    namespace = f"{NAMESPACE_PREFIX}{suffix}"
    kube_env.kubectl("create", "namespace", namespace)
    name, keyspace = f"r{suffix}", f"xw_{suffix}"
    manifest = region_manifest(
        name,
        namespace,
        kafka=kafka_bootstrap,
        cassandra=cassandra_env,
        keyspace=keyspace,
        deletion_policy="Delete",  # topics and keyspace go with the test
    )
    apply(kube_env, manifest)
    found = Region(kube_env, name, namespace, keyspace)
    eventually(found.ready, "the ChatRegion to turn Ready")
    yield found
    # Deleted while the operator still runs: its finalizer removes topics and keyspace,
    # and the namespace is not left Terminating on a finalizer nobody serves.
    kube_env.kubectl("-n", namespace, "delete", "chatregion", name, "--timeout=60s", check=False)
    kube_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@dataclass
class ReadyWatch:
    """(seconds since start, Ready status, Ready reason) of every version of the
    region's status the API server hands out, from ``kubectl get --watch``."""

    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    seen: list[tuple[float, str, str]] = field(default_factory=list)

    def follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            status, _, reason = line.rstrip("\n").partition(" ")
            self.seen.append((time.monotonic() - self.started, status, reason))

    def first(self, status: str, reason: str | None = None, after: float = 0.0) -> float | None:
        return next(
            (
                t
                for t, s, r in list(self.seen)
                if t >= after and s == status and (reason is None or r == reason)
            ),
            None,
        )


@pytest.fixture
def ready_watch(region: Region) -> Iterator[ReadyWatch]:
    ready = '{.status.conditions[?(@.type=="Ready")]'
    template = f'{ready}.status}} {ready}.reason}}{{"\\n"}}'
    process = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            str(region.kube.kubeconfig),
            "-n",
            region.namespace,
            "get",
            "chatregion",
            region.name,
            "--watch",
            f"-o=jsonpath={template}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watch = ReadyWatch(process)
    reader = threading.Thread(target=watch.follow, daemon=True)
    reader.start()
    try:
        eventually(lambda: watch.first("True"), "the watch to show the region Ready")
        yield watch
    finally:
        process.terminate()
        process.wait(10)
        reader.join(10)
        assert process.stdout is not None
        process.stdout.close()


def not_ready_then_ready(watch: ReadyWatch, region: Region, reason: str) -> tuple[float, float]:
    """(when the watch first showed Ready=False with ``reason``, when Ready again)."""
    went = eventually(
        lambda: watch.first("False", reason), f"Ready=False with reason {reason}", RESYNC_BOUND
    )
    back = eventually(
        lambda: watch.first("True", after=went), "the region Ready again", RESYNC_BOUND
    )
    eventually(region.ready, "Ready at the current generation")
    return went, back


def topics(bootstrap: str, prefix: str) -> dict[str, int]:
    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            described = await admin.describe_topics(names) if names else []
            return {d["topic"]: len(d["partitions"]) for d in described}
        finally:
            await admin.close()

    return asyncio.run(describe())


def delete_topic(bootstrap: str, topic: str) -> None:
    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            response = await admin.delete_topics([topic])
            assert [error for _, error, *_ in response.topic_error_codes] == [0], response
        finally:
            await admin.close()

    asyncio.run(delete())


def test_a_deleted_topic_turns_the_region_not_ready_until_recreated(
    region: Region, ready_watch: ReadyWatch, kafka_bootstrap: str
) -> None:
    topic = f"tidings.{region.name}.receipts"
    prefix = f"tidings.{region.name}."
    partitions = topics(kafka_bootstrap, prefix)[topic]
    deleted_at = time.monotonic() - ready_watch.started
    delete_topic(kafka_bootstrap, topic)

    went, back = not_ready_then_ready(ready_watch, region, "TopicMissing")
    # A create while Kafka still deletes the topic is answered "already exists": the
    # read-back then keeps the region not Ready and the next check tries again.
    assert topics(kafka_bootstrap, prefix).get(topic) == partitions
    missing = region.events("TopicMissing")
    assert missing, "no Warning Event"
    assert missing[0]["type"] == "Warning", missing
    assert topic in missing[0]["message"]
    recreated = [
        e for e in region.events("ExternalUpdated") if f"create topic {topic} " in e["message"]
    ]
    assert len(recreated) >= 2, recreated  # created with the region, then again
    print(
        f"topic deleted: not Ready (TopicMissing) after {went - deleted_at:.2f} s, "
        f"Ready again after {back - deleted_at:.2f} s "
        f"(--topic-check-interval {CHECK_INTERVAL} s)"
    )


@pytest.mark.parametrize(
    ("drop", "reason", "named"),
    [
        ("DROP KEYSPACE {ks}", "KeyspaceMissing", "{ks}"),
        ("DROP TABLE {ks}.inbox_acked", "TableMissing", "inbox_acked"),
    ],
    ids=["keyspace", "table"],
)
def test_a_dropped_keyspace_or_table_turns_the_region_not_ready_until_recreated(
    region: Region,
    ready_watch: ReadyWatch,
    cassandra_env: dict[str, str],
    drop: str,
    reason: str,
    named: str,
) -> None:
    with connect(
        cassandra_env["TIDINGS_CASSANDRA_CONTACT_POINTS"].split(","),
        int(cassandra_env["TIDINGS_CASSANDRA_PORT"]),
        local_dc=cassandra_env["TIDINGS_CASSANDRA_LOCAL_DC"],
    ) as session:

        def tables() -> set[str]:
            rows = session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
                (region.keyspace,),
            )
            return {row["table_name"] for row in rows}

        before = tables()
        assert {"schema_migrations", "inbox_acked"} <= before, before
        dropped_at = time.monotonic() - ready_watch.started
        session.execute(drop.format(ks=region.keyspace))

        went, back = not_ready_then_ready(ready_watch, region, reason)
        assert tables() == before  # every table of the platform back, nothing else touched
    missing = region.events(reason)
    assert missing, "no Warning Event"
    assert missing[0]["type"] == "Warning", missing
    assert named.format(ks=region.keyspace) in missing[0]["message"]
    print(
        f"{drop.split()[1].lower()} dropped: not Ready ({reason}) after "
        f"{went - dropped_at:.2f} s, Ready again after {back - dropped_at:.2f} s "
        f"(--keyspace-check-interval {CHECK_INTERVAL} s)"
    )
