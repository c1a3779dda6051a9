"""Gateways on a clock the test moves, for the rate-limit tests: buckets refill by exactly
what the test says, however long the engines take."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from harness import Gateway, run_gateway


class FakeClock:
    """Seconds since the epoch that stand still until the test moves them, so buckets
    refill by exactly what the test says, however long the engines take."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.asynccontextmanager
async def clocked(
    tmp_path: Path, engine_settings: dict[str, str], **overrides: Any
) -> AsyncIterator[tuple[Gateway, FakeClock]]:
    """A gateway on ``engine_settings`` (the ``engine_settings`` fixture) and a fake clock."""
    clock = FakeClock()
    async with run_gateway(tmp_path / "data", clock=clock, **engine_settings, **overrides) as gw:
        yield gw, clock


def refusal(r: httpx.Response) -> float:
    """Check a 429 answer; returns its ``details.retry_after``."""
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "rate_limited", error
    retry_after = float(error["details"]["retry_after"])
    assert retry_after > 0
    assert int(r.headers["Retry-After"]) == max(1, int(retry_after + 0.999))
    return retry_after
