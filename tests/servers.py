"""The real servers of the tests, through ``scripts/deps`` (as developers and CI run it)."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / "scripts" / "deps"

ENGINE_SETS = ["embedded", "distributed"]
"""What platform fixtures run on: the embedded engines, and Kafka + Cassandra + Redis + S3."""


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


def as_settings(env: dict[str, str]) -> dict[str, str]:
    """``TIDINGS_*`` variables as ``Settings`` keyword arguments."""
    return {k.removeprefix("TIDINGS_").lower(): v for k, v in env.items()}


def unique_region() -> str:
    """A region of the test's own: its topics, Redis keys and channels are its alone."""
    return f"t{uuid.uuid4().hex[:12]}"
