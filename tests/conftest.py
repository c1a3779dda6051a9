"""Shared fixtures: a fresh gateway per test on its own data directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness import Gateway, run_gateway


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(tmp_path / "data") as gw:
        yield gw
