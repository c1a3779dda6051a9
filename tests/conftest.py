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


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Start Redis once per session with ``scripts/deps`` (never skips: fails loudly)."""
    up = subprocess.run(
        [str(DEPS), "up", "redis"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if up.returncode != 0:
        pytest.fail(
            f"scripts/deps up redis failed (exit {up.returncode}):\n{up.stdout}{up.stderr}",
            pytrace=False,
        )
    env = subprocess.run([str(DEPS), "env"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    found = re.search(r"^export REDIS_URL='([^']+)'$", env.stdout, re.MULTILINE)
    if env.returncode != 0 or found is None:
        pytest.fail(
            f"scripts/deps env gave no REDIS_URL (exit {env.returncode}):\n"
            f"{env.stdout}{env.stderr}",
            pytrace=False,
        )
    return found.group(1)
