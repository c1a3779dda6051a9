"""Shared fixtures: a fresh gateway per test on its own data directory."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness import Gateway, run_gateway

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / "scripts" / "deps"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(tmp_path / "data") as gw:
        yield gw


def deps_up(service: str) -> dict[str, str]:
    """Start ``service`` with ``scripts/deps`` (idempotent) and return its exported
    settings (``scripts/deps env``). Fails the test, never skips, when it cannot start."""
    up = subprocess.run(
        [str(DEPS), "up", service], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if up.returncode != 0:
        pytest.fail(
            f"scripts/deps up {service} failed (exit {up.returncode}):\n{up.stdout}{up.stderr}",
            pytrace=False,
        )
    env = subprocess.run([str(DEPS), "env"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if env.returncode != 0:
        pytest.fail(f"scripts/deps env failed:\n{env.stdout}{env.stderr}", pytrace=False)
    return dict(re.findall(r"^export ([A-Z0-9_]+)='([^']*)'$", env.stdout, re.MULTILINE))


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
def s3_env() -> dict[str, str]:
    """A real S3-compatible server; ``TIDINGS_S3_*`` settings (endpoint, bucket, keys)."""
    env = deps_up("s3")
    return {k: v for k, v in env.items() if k.startswith("TIDINGS_S3_")}
