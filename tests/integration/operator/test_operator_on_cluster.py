"""The operator as an SRE runs it: ``tidings-operator run`` in a subprocess, resources
applied with kubectl to a real API server, topics and keyspace on the real Kafka and
Cassandra. Pods become Running on kwok's fake nodes, so Deployments report ready."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cassandra.cluster import Cluster
from prometheus_client.parser import text_string_to_metric_families

from operator_support import (
    OperatorProcess,
    apply,
    condition,
    eventually,
    get_json,
    install_crds,
    ready_now,
    region_manifest,
    running_operator,
)
from servers import KubeEnv

pytestmark = pytest.mark.slow

COMPONENTS = ("gateway", "router", "media", "presence", "delivery", "analytics")
"""A region's own Deployments (push workers belong to PushPools)."""
NAMESPACE_PREFIX = "top-"


@pytest.fixture(scope="module")
def operator(
    kube_env: KubeEnv,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    install_crds(kube_env)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(kube_env, [f"{NAMESPACE_PREFIX}*"], log, interval=3.0) as op:
        yield op


@dataclass
class Region:
    kube: KubeEnv
    name: str
    namespace: str
    keyspace: str
    manifest: dict[str, Any]

    def get(self, *what: str) -> dict[str, Any] | None:
        return get_json(self.kube, "-n", self.namespace, *what)

    def body(self) -> dict[str, Any]:
        found = self.get("chatregion", self.name)
        assert found is not None, f"ChatRegion {self.name} is gone"
        return found

    def patch(self, patch: dict[str, Any], kind: str = "chatregion", name: str = "") -> None:
        self.kube.kubectl(
            "-n",
            self.namespace,
            "patch",
            kind,
            name or self.name,
            "--type=merge",
            "-p",
            json.dumps(patch),
        )

    def ready(self) -> dict[str, Any] | None:
        body = self.body()
        return body if ready_now(body) else None

    def reconciled(self) -> dict[str, Any] | None:
        """The body once the operator has written status for its current generation."""
        body = self.body()
        status = body.get("status") or {}
        return body if status.get("observedGeneration") == body["metadata"]["generation"] else None


@pytest.fixture
def region(
    kube_env: KubeEnv,
    operator: OperatorProcess,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
    request: pytest.FixtureRequest,
) -> Iterator[Region]:
    suffix = uuid.uuid4().hex[:8]
    namespace = f"{NAMESPACE_PREFIX}{suffix}"
    kube_env.kubectl("create", "namespace", namespace)
    name = f"r{suffix}"
    keyspace = f"op_{suffix}"
    marker = request.node.get_closest_marker("region")
    extra = marker.kwargs if marker else {}
    manifest = region_manifest(
        name, namespace, kafka=kafka_bootstrap, cassandra=cassandra_env, keyspace=keyspace, **extra
    )
    yield Region(kube_env, name, namespace, keyspace, manifest)
    kube_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def kafka_topics(bootstrap: str, prefix: str) -> dict[str, int]:
    """Topic -> partition count, for topics starting with ``prefix``."""

    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if not names:
                return {}
            return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
        finally:
            await admin.close()

    return asyncio.run(describe())


def keyspace_replication(cassandra: dict[str, str], keyspace: str) -> dict[str, str] | None:
    cluster = Cluster(
        cassandra["TIDINGS_CASSANDRA_CONTACT_POINTS"].split(","),
        port=int(cassandra["TIDINGS_CASSANDRA_PORT"]),
        protocol_version=5,
    )
    try:
        session = cluster.connect()
        row = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
            (keyspace,),
        ).one()
        return dict(row.replication) if row else None
    finally:
        cluster.shutdown()


def events_of(region: Region) -> list[dict[str, Any]]:
    found = get_json(
        region.kube,
        "-n",
        region.namespace,
        "events",
        f"--field-selector=involvedObject.name={region.name}",
    )
    return list((found or {}).get("items") or [])


def test_a_region_gets_children_topics_and_keyspace_then_turns_ready(
    region: Region, kafka_bootstrap: str, cassandra_env: dict[str, str]
) -> None:
    apply(region.kube, region.manifest)
    body = eventually(region.ready, "the ChatRegion to turn Ready")
    uid = body["metadata"]["uid"]
    status = body["status"]
    assert status["phase"] == "Ready"
    assert status["componentsReady"] == f"{len(COMPONENTS)}/{len(COMPONENTS)}"
    assert status["ownedShards"] == 4
    for component in COMPONENTS:
        deployment = region.get("deployment", f"{region.name}-{component}")
        assert deployment is not None, component
        (owner,) = deployment["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("ChatRegion", uid, True)
        assert deployment["status"]["readyReplicas"] == deployment["spec"]["replicas"]
        assert status["components"][component]["ready"] == deployment["spec"]["replicas"]
    assert region.get("service", f"{region.name}-gateway") is not None
    assert region.get("configmap", f"{region.name}-settings") is not None
    shards = region.get("messageshards")
    assert shards is not None
    assert sorted(s["metadata"]["name"] for s in shards["items"]) == [
        f"{region.name}-{i}" for i in range(4)
    ]
    topics = kafka_topics(kafka_bootstrap, f"tidings.{region.name}.")
    assert topics == {
        f"tidings.{region.name}.{t}": 2 for t in ("deliveries", "receipts", "push", "analytics")
    }
    replication = keyspace_replication(cassandra_env, region.keyspace)
    assert replication is not None
    assert replication["class"].endswith("NetworkTopologyStrategy")
    assert replication[cassandra_env["TIDINGS_CASSANDRA_LOCAL_DC"]] == "1"
    reasons = {e["reason"] for e in events_of(region)}
    assert "ChildCreated" in reasons
    assert "Ready" in reasons
    printed = region.kube.kubectl("-n", region.namespace, "get", "chatregions").stdout
    assert "READY" in printed
    assert "True" in printed


def test_scaling_a_component_in_the_spec_scales_its_deployment(region: Region) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    region.patch({"spec": {"components": {"router": {"replicas": 3}}}})

    def scaled() -> bool:
        dep = region.get("deployment", f"{region.name}-router") or {}
        return (dep.get("spec") or {}).get("replicas") == 3 and (dep.get("status") or {}).get(
            "readyReplicas"
        ) == 3

    eventually(scaled, "the router Deployment to run 3 ready pods")
    body = eventually(region.ready, "the ChatRegion to be Ready at the new generation")
    assert body["status"]["components"]["router"] == {"ready": 3, "desired": 3}


def ready_reason(region: Region, reason: str) -> dict[str, Any] | None:
    """The Ready condition once it is False with ``reason`` at the current generation."""
    body = region.body()
    cond = condition(body, "Ready")
    current = cond and cond.get("observedGeneration") == body["metadata"]["generation"]
    return cond if current and cond["status"] == "False" and cond["reason"] == reason else None


def test_a_missing_secret_is_named_and_its_creation_reconciles(region: Region) -> None:
    manifest = dict(region.manifest)
    manifest["spec"] = {
        **manifest["spec"],
        "redis": {"urlSecretRef": {"name": "redis-url", "key": "url"}},
    }
    apply(region.kube, manifest)
    cond = eventually(
        lambda: ready_reason(region, "SecretNotFound"), "Ready=False naming the Secret"
    )
    assert "spec.redis.urlSecretRef: Secret redis-url not found" in cond["message"]
    region.kube.kubectl(
        "-n", region.namespace, "create", "secret", "generic", "redis-url", "--from-literal=x=y"
    )
    cond = eventually(lambda: ready_reason(region, "SecretKeyMissing"), "the missing key named")
    assert "has no key url" in cond["message"]
    region.kube.kubectl(
        "-n",
        region.namespace,
        "patch",
        "secret",
        "redis-url",
        "--type=merge",
        "-p",
        json.dumps({"stringData": {"url": "redis://127.0.0.1:6390/0"}}),
    )
    eventually(region.ready, "the ChatRegion to turn Ready once the Secret is complete")


def test_a_failing_reconcile_reports_its_reason_at_the_new_generation(region: Region) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    # No node of this cluster is in datacenter "nowhere": the driver finds no host to
    # try (its error is a list, not a dict), which used to escape as AttributeError.
    region.patch({"spec": {"cassandra": {"datacenter": "nowhere", "replication": {"nowhere": 1}}}})
    cond = eventually(
        lambda: ready_reason(region, "CassandraRejected"), "Ready=False CassandraRejected"
    )
    assert "datacenter 'nowhere'" in cond["message"]
    assert region.body()["status"]["phase"] == "Degraded"


def test_a_deleted_or_hand_edited_child_is_repaired(region: Region) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    name = f"{region.name}-delivery"
    before = region.get("deployment", name)
    assert before is not None
    region.kube.kubectl("-n", region.namespace, "delete", "deployment", name)
    after = eventually(
        lambda: (
            (d := region.get("deployment", name))
            and d["metadata"]["uid"] != before["metadata"]["uid"]
            and d
        ),
        "the deleted Deployment to come back",
    )
    assert after["metadata"]["ownerReferences"][0]["kind"] == "ChatRegion"

    region.kube.kubectl("-n", region.namespace, "scale", "deployment", name, "--replicas=4")
    region.patch({"data": {"TIDINGS_LOG_LEVEL": "debug"}}, "configmap", f"{region.name}-settings")
    eventually(
        lambda: (region.get("deployment", name) or {}).get("spec", {}).get("replicas") == 1,
        "the hand-scaled Deployment to be scaled back to the spec",
    )
    eventually(
        lambda: (
            (region.get("configmap", f"{region.name}-settings") or {})
            .get("data", {})
            .get("TIDINGS_LOG_LEVEL")
            == "info"
        ),
        "the hand-edited settings ConfigMap to be restored",
    )
    reasons = [e["reason"] for e in events_of(region)]
    assert "ChildPatched" in reasons


def refusals(op: OperatorProcess, region: Region) -> dict[str, float]:
    """The operator's refusals gauge for ``region``, by reason (as a scrape reads it)."""
    found = {}
    for family in text_string_to_metric_families(op.metrics()):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "tidings_operator_refusals" and (
                labels.get("namespace"),
                labels.get("name"),
            ) == (region.namespace, region.name):
                found[labels["reason"]] = sample.value
    return found


def test_an_adopted_topic_with_more_partitions_is_refused_not_shrunk(
    region: Region, kafka_bootstrap: str, operator: OperatorProcess
) -> None:
    """Someone made the deliveries topic with 4 partitions; the spec asks 2. The API
    server cannot see that (its CEL rule only stops a spec from shrinking), so the
    operator refuses with a condition, exports the refusal with its reason, and leaves
    the topic alone; growing the spec to match clears both."""
    topic = f"tidings.{region.name}.deliveries"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(create())
    apply(region.kube, region.manifest)

    def refused() -> dict[str, Any] | None:
        body = region.reconciled()
        cond = condition(body, "Ready")
        return cond if cond and cond["reason"] == "PartitionsCannotShrink" else None

    cond = eventually(refused, "Ready=False with reason PartitionsCannotShrink")
    assert cond["status"] == "False"
    assert "cannot remove partitions" in cond["message"]
    assert region.body()["status"]["phase"] == "Conflict"
    assert kafka_topics(kafka_bootstrap, topic)[topic] == 4
    assert refusals(operator, region) == {"PartitionsCannotShrink": 1.0}

    region.patch({"spec": {"kafka": {"partitions": 4}}})
    eventually(region.ready, "the ChatRegion to be Ready once the spec matches the topic")
    assert set(kafka_topics(kafka_bootstrap, f"tidings.{region.name}.").values()) == {4}
    assert refusals(operator, region) == {}


def test_a_paused_region_is_left_alone_until_resumed(region: Region) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    region.patch({"metadata": {"annotations": {"tidings.dev/paused": "true"}}})
    eventually(
        lambda: (c := condition(region.body(), "Paused")) and c["status"] == "True",
        "the Paused condition",
    )
    region.patch({"spec": {"components": {"media": {"replicas": 2}}}})
    body = eventually(region.reconciled, "the paused status to describe the new generation")
    assert body["status"]["phase"] == "Paused"
    media = region.get("deployment", f"{region.name}-media")
    assert media is not None
    assert media["spec"]["replicas"] == 1

    region.patch({"metadata": {"annotations": {"tidings.dev/paused": "false"}}})
    eventually(
        lambda: (
            (region.get("deployment", f"{region.name}-media") or {}).get("spec", {}).get("replicas")
            == 2
        ),
        "the change made while paused to be applied after resuming",
    )


def test_an_unmanaged_child_keeps_its_hand_edits(region: Region) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    name = f"{region.name}-presence"
    region.kube.kubectl(
        "-n", region.namespace, "annotate", "deployment", name, "tidings.dev/unmanaged=true"
    )
    # A reconcile already under way may have listed the child before the annotation:
    # let one finish (status at a new generation) before editing by hand.
    region.patch({"spec": {"components": {"analytics": {"replicas": 2}}}})
    eventually(region.reconciled, "a reconcile after the annotation")
    region.kube.kubectl("-n", region.namespace, "scale", "deployment", name, "--replicas=2")
    region.patch({"spec": {"components": {"router": {"replicas": 2}}}})
    eventually(
        lambda: (
            (region.get("deployment", f"{region.name}-router") or {})
            .get("spec", {})
            .get("replicas")
            == 2
        ),
        "the managed router Deployment to follow the spec",
    )
    eventually(region.reconciled, "the status to describe the new generation")
    presence = region.get("deployment", name)
    assert presence is not None
    assert presence["spec"]["replicas"] == 2


def _delete_region(region: Region) -> None:
    region.kube.kubectl("-n", region.namespace, "delete", "chatregion", region.name, "--wait=false")
    eventually(lambda: region.get("chatregion", region.name) is None, "the ChatRegion to go")


def test_deleting_with_retain_keeps_topics_and_keyspace(
    region: Region, kafka_bootstrap: str, cassandra_env: dict[str, str]
) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    _delete_region(region)
    assert len(kafka_topics(kafka_bootstrap, f"tidings.{region.name}.")) == 4
    assert keyspace_replication(cassandra_env, region.keyspace) is not None
    eventually(
        lambda: region.get("deployment", f"{region.name}-gateway") is None,
        "the children to be garbage-collected",
    )


@pytest.mark.timeout(300)  # topic deletion and a keyspace drop on a loaded machine
@pytest.mark.region(deletion_policy="Delete")
def test_deleting_with_delete_removes_topics_and_keyspace(
    region: Region, kafka_bootstrap: str, cassandra_env: dict[str, str]
) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    _delete_region(region)
    # The finalizer lets the region go only once both are removed...
    assert kafka_topics(kafka_bootstrap, f"tidings.{region.name}.") == {}
    assert keyspace_replication(cassandra_env, region.keyspace) is None
    # ...and no reconcile that was running at the time brings them back.
    eventually(
        lambda: region.get("messageshard", f"{region.name}-0") is None,
        "the MessageShards to be garbage-collected",
    )
    assert kafka_topics(kafka_bootstrap, f"tidings.{region.name}.") == {}
    assert keyspace_replication(cassandra_env, region.keyspace) is None


@pytest.mark.timeout(300)
@pytest.mark.region(deletion_policy="Delete")
def test_deleting_the_namespace_carries_out_the_deletion_policy(
    region: Region, kafka_bootstrap: str, cassandra_env: dict[str, str]
) -> None:
    """A terminating namespace refuses new Events; the finalizer must not hang on them
    (it would hold the namespace in Terminating for ever)."""
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    region.kube.kubectl("delete", "namespace", region.namespace, "--wait=false")
    eventually(
        lambda: get_json(region.kube, "namespace", region.namespace) is None,
        "the namespace to finish terminating",
    )
    assert kafka_topics(kafka_bootstrap, f"tidings.{region.name}.") == {}
    assert keyspace_replication(cassandra_env, region.keyspace) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spec": {"kafka": {"partitions": 0}}}, "spec.kafka.partitions"),
        ({"spec": {"kafka": {"partitions": 1}}}, "Kafka cannot remove partitions"),
        ({"spec": {"shards": 16}}, "shards is immutable"),
        ({"spec": {"deletionPolicy": "Sometimes"}}, "spec.deletionPolicy"),
        (
            {"spec": {"cassandra": {"datacenter": "elsewhere"}}},
            "spec.cassandra.replication: Invalid value",
        ),
    ],
)
def test_invalid_specs_are_refused_by_the_api_server(
    region: Region, change: dict[str, Any], message: str
) -> None:
    apply(region.kube, region.manifest)
    done = region.kube.kubectl(
        "-n",
        region.namespace,
        "patch",
        "chatregion",
        region.name,
        "--type=merge",
        "-p",
        json.dumps(change),
        check=False,
    )
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert '<nil>: Invalid value: "object"' not in done.stderr, done.stderr


@pytest.mark.region(pods={"hostNetwork": True})  # every component on port 8080
def test_a_spec_only_the_operator_refuses_is_permanent_and_still_deletable(
    region: Region, operator: OperatorProcess
) -> None:
    apply(region.kube, region.manifest)

    def refused() -> dict[str, Any] | None:
        cond = condition(region.get("chatregion", region.name), "Ready")
        return cond if cond and cond["reason"] == "InvalidSpec" else None

    ready = eventually(refused, "Ready=False InvalidSpec")
    assert ready["status"] == "False"
    assert "every component needs ports of its own" in ready["message"]
    assert f"kubectl edit chatregion {region.name}" in ready["message"]
    key = f"ChatRegion {region.namespace}/{region.name}"
    eventually(
        lambda: f"reconcile of {key} cannot succeed as it is" in operator.log_text(),
        "the operator to log the permanent error",
    )
    assert f"reconcile of {key} failed (attempt" not in operator.log_text()  # no back-off
    _delete_region(region)  # the finalizer lets it go
    assert "ExternalRetained" in {e["reason"] for e in events_of(region)}


def run_push_pool(region: Region, **spec: Any) -> str:
    """An FCM PushPool of the region (and its credentials Secret); returns its name once
    it is Ready."""
    name = f"{region.name}-fcm"
    region.kube.kubectl(
        "-n",
        region.namespace,
        "create",
        "secret",
        "generic",
        "fcm-credentials",
        "--from-literal=service-account.json={}",
    )
    pool = {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "PushPool",
        "metadata": {"name": name, "namespace": region.namespace},
        "spec": {
            "region": region.name,
            "provider": "fcm",
            "credentialsSecret": {"name": "fcm-credentials", "key": "service-account.json"},
            "fcm": {},
            **spec,
        },
    }
    apply(region.kube, pool)

    def pool_ready() -> dict[str, Any] | None:
        body = region.get("pushpool", name)
        cond = condition(body, "Ready")
        return body if cond and cond["status"] == "True" else None

    eventually(pool_ready, "the PushPool to turn Ready")
    return name


def produce(bootstrap: str, topic: str, count: int) -> None:
    """``count`` records on ``topic``, keyed like the router's (one key per record)."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(count):
                await producer.send(topic, b"ciphertext", key=f"user-{i}".encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def test_a_push_pool_runs_its_workers_and_follows_kubectl_scale(region: Region) -> None:
    apply(region.kube, region.manifest)
    pool = run_push_pool(region, replicas=1)
    workers = f"{pool}-push"
    deployment = region.get("deployment", workers)
    assert deployment is not None
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "PushPool"
    region.kube.kubectl("-n", region.namespace, "scale", "pushpool", pool, "--replicas=3")
    eventually(
        lambda: (
            (region.get("deployment", workers) or {}).get("status", {}).get("readyReplicas") == 3
        ),
        "the pool's workers to follow kubectl scale",
    )
    body = eventually(
        lambda: (
            (b := region.get("pushpool", pool))
            and (b.get("status") or {}).get("readyReplicas") == 3
            and b
        ),
        "the PushPool status to count 3 ready workers",
    )
    assert body["status"]["replicas"] == 3
    # Only the ChatRegion holds a finalizer (for its deletion policy): pools and shards
    # never wait for an operator to go, nor keep their namespace from going.
    assert not body["metadata"].get("finalizers")
    shards = (region.get("messageshards") or {}).get("items") or []
    assert shards
    assert [s["metadata"].get("finalizers") for s in shards] == [None] * len(shards)
    assert region.body()["metadata"]["finalizers"] == ["tidings.dev/finalizer"]


def test_a_push_pool_scales_on_its_topic_lag_between_its_bounds(
    region: Region, kafka_bootstrap: str, operator: OperatorProcess
) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion (and its push topic) to turn Ready")
    autoscaling = {"minReplicas": 1, "maxReplicas": 4, "lagPerReplica": 10}
    pool = run_push_pool(region, autoscaling=autoscaling)
    workers = f"{pool}-push"

    def scaled_to(replicas: int, lag: int) -> dict[str, Any] | None:
        deployment = region.get("deployment", workers) or {}
        status = (region.get("pushpool", pool) or {}).get("status") or {}
        if deployment.get("spec", {}).get("replicas") == replicas and (
            status.get("consumerLag") == lag
        ):
            return status
        return None

    eventually(lambda: scaled_to(1, 0), "an idle pool to run its minimum of 1 worker")
    # No worker consumes (the pods are kwok's): every record stays as lag.
    produce(kafka_bootstrap, f"tidings.{region.name}.push", 25)
    eventually(lambda: scaled_to(3, 25), "25 waiting jobs at 10 per worker to need 3")
    produce(kafka_bootstrap, f"tidings.{region.name}.push", 100)
    status = eventually(lambda: scaled_to(4, 125), "125 waiting jobs to stop at maxReplicas 4")
    assert status["replicas"] == 4
    # The lag alert's metric: the same read, exported by the operator.
    lag = (
        f'tidings_operator_consumer_lag{{kind="PushPool",name="{pool}",'
        f'namespace="{region.namespace}",region="{region.name}"}} 125.0'
    )
    assert lag in operator.metrics().splitlines()


def test_a_shard_reports_the_records_waiting_for_its_owner(
    region: Region, kafka_bootstrap: str, operator: OperatorProcess
) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    produce(kafka_bootstrap, f"tidings.{region.name}.deliveries", 7)
    produce(kafka_bootstrap, f"tidings.{region.name}.receipts", 3)

    def lags() -> dict[str, int] | None:
        shards = (region.get("messageshards") or {}).get("items") or []
        found = {s["metadata"]["name"]: (s.get("status") or {}).get("consumerLag") for s in shards}
        return found if len(found) == 4 and set(found.values()) == {10} else None

    lags_now = eventually(lags, "every shard's consumerLag to count the 10 waiting records")
    body = region.get("messageshard", f"{region.name}-0")
    assert body is not None
    assert (body["status"]["owner"], body["status"]["epoch"]) == (
        region.name,
        body["spec"]["epoch"],
    )
    assert sorted(lags_now) == [f"{region.name}-{i}" for i in range(4)]
    # The delivery lag alert's metric: set by the reconcile that wrote the status.
    exported = operator.metrics().splitlines()
    for i in range(4):
        assert (
            f'tidings_operator_consumer_lag{{kind="MessageShard",name="{region.name}-{i}",'
            f'namespace="{region.namespace}",region="{region.name}"}} 10.0'
        ) in exported


def test_a_shard_given_to_no_known_region_is_invalid_and_keeps_its_owner(region: Region) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    shard = f"{region.name}-1"
    printed = region.kube.kubectl("-n", region.namespace, "get", "messageshard", shard).stdout
    assert "True" in printed  # the READY column
    region.patch({"spec": {"owner": "nowhere", "epoch": 2}}, kind="messageshard", name=shard)

    def invalid() -> dict[str, Any] | None:
        body = region.get("messageshard", shard) or {}
        return body if (body.get("status") or {}).get("phase") == "Invalid" else None

    body = eventually(invalid, "the shard to be marked Invalid")
    assert (body["status"]["owner"], body["status"]["epoch"]) == (region.name, 1)
    cond = eventually(
        lambda: ready_reason(region, "ShardOwnerUnknown"), "the region to report the shard"
    )
    assert f"MessageShard {shard}: spec.owner nowhere" in cond["message"]
    shard_map = region.get("configmap", f"{region.name}-shardmap")
    assert shard_map is not None
    assert "nowhere" not in json.dumps(shard_map["data"])


def test_the_operator_exports_reconcile_metrics(region: Region, operator: OperatorProcess) -> None:
    apply(region.kube, region.manifest)
    eventually(region.ready, "the ChatRegion to turn Ready")
    text = operator.metrics()
    assert 'tidings_operator_reconcile_total{kind="ChatRegion",result="ok"}' in text
    assert "tidings_operator_reconcile_duration_seconds_bucket" in text
    assert 'tidings_operator_child_changes_total{change="Created",kind="Deployment"}' in text
    assert "tidings_operator_paused_resources" in text
    ready = f'kind="ChatRegion",name="{region.name}",namespace="{region.namespace}"'
    assert f"tidings_operator_resource_ready{{{ready}}} 1.0" in text
    chatter = [
        line
        for line in operator.log_text().splitlines()
        if "kopf.objects" in line and line.endswith("succeeded.")
    ]
    assert chatter == []  # kopf's per-handler-run lines are DEBUG
