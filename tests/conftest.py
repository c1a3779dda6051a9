"""Shared fixtures: a fresh platform per test on each engine set, and the real servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harness import Gateway, run_gateway
from servers import (
    ENGINE_SETS,
    KubeEnv,
    RealNode,
    as_settings,
    deps_up,
    image_build,
    kube_up,
    real_node_up,
    unique_region,
)
from tidings.config import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the Kubernetes control plane are marked ``kube``: ``make test`` runs
    them after the rest, so the control plane's CPU does not weigh on the timing-bound
    fault tests of the messaging path. Tests that run the container image are marked
    ``image``; those that run pods on the real node (containerd + kubelet) ``realnode``."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "kube_env" in fixtures:
            item.add_marker(pytest.mark.kube)
        if "tidings_image" in fixtures:
            item.add_marker(pytest.mark.image)
        if "real_node" in fixtures:
            item.add_marker(pytest.mark.realnode)


@pytest.fixture(params=ENGINE_SETS)
async def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A fresh platform per test (every component in one process) on each engine set:
    embedded (its own data directory) and distributed (the real servers, a region of its
    own, so topics, Redis keys and channels are the test's alone)."""
    overrides: dict[str, str] = {}
    if request.param == "distributed":
        overrides = as_settings(request.getfixturevalue("distributed_env"))
        overrides["region"] = unique_region()
    async with run_gateway(tmp_path / "data", **overrides) as gw:
        yield gw


@pytest.fixture
async def embedded_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """For behaviour of the embedded engines themselves (e.g. their blob URLs)."""
    async with run_gateway(tmp_path / "data") as gw:
        yield gw


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A real Redis, started once per session."""
    return deps_up("redis")["REDIS_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """A real Kafka broker (KRaft, one node), started once per session."""
    return deps_up("kafka")["KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def cassandra_env() -> dict[str, str]:
    """A real Cassandra node; ``TIDINGS_CASSANDRA_*`` settings (contact points, port, dc)."""
    env = deps_up("cassandra")
    return {k: v for k, v in env.items() if k.startswith("TIDINGS_CASSANDRA_")}


@pytest.fixture(scope="session")
def distributed_env(
    redis_url: str, kafka_bootstrap: str, cassandra_env: dict[str, str], s3_env: dict[str, str]
) -> dict[str, str]:
    """``TIDINGS_*`` settings that run the platform on the real Kafka, Cassandra, Redis and
    S3 servers (one keyspace for the whole session: tests use fresh users)."""
    env = {
        "TIDINGS_ENGINE": "distributed",
        "TIDINGS_REDIS_URL": redis_url,
        "TIDINGS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TIDINGS_CASSANDRA_KEYSPACE": "tidings_test",
        "TIDINGS_PARTITIONS": "4",
        **cassandra_env,
        **s3_env,
    }
    known = {f"TIDINGS_{name.upper()}" for name in Settings.model_fields}
    return {k: v for k, v in env.items() if k in known}


@pytest.fixture(scope="session")
def s3_env() -> dict[str, str]:
    """A real S3-compatible server; ``TIDINGS_S3_*`` settings (endpoint, bucket, keys)."""
    env = deps_up("s3")
    return {k: v for k, v in env.items() if k.startswith("TIDINGS_S3_")}


@pytest.fixture(scope="session")
def kube_env() -> KubeEnv:
    """A real Kubernetes control plane on loopback (etcd, kube-apiserver, controller-manager,
    scheduler, kwok's fake nodes), started once per session by ``scripts/kube``."""
    env = kube_up()
    return KubeEnv(kubeconfig=Path(env["TIDINGS_KUBECONFIG"]), helm=Path(env["TIDINGS_HELM"]))


@pytest.fixture(scope="session")
def tidings_image() -> str:
    """The Tidings image of this source, built once per session by ``scripts/image build``
    (cached by the hash of the build context: seconds when nothing changed)."""
    return image_build()["TIDINGS_IMAGE"]


@pytest.fixture(scope="session")
def real_node(kube_env: KubeEnv, tidings_image: str) -> RealNode:
    """A real node beside the kwok nodes (``scripts/kube node up``: containerd, runc, a
    kubelet built like the control plane), the Tidings image of this source imported into
    its containerd. Left running after the session, like the control plane."""
    env = real_node_up()
    return RealNode(
        name=env["TIDINGS_KUBE_REAL_NODE"],
        label=env["TIDINGS_KUBE_REAL_NODE_LABEL"],
        taint=env["TIDINGS_KUBE_REAL_NODE_TAINT"],
    )


@pytest.fixture
def kube_namespace(kube_env: KubeEnv) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    kube_env.kubectl("create", "namespace", name)
    yield name
    kube_env.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
