"""AnalyticsStore contract: daily counters add up per (day, name), days stay apart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contract_support import sqlite_or_cassandra
from tidings.engines.embedded.analytics import SqliteAnalyticsStore
from tidings.ports import AnalyticsStore


@pytest.fixture(params=["embedded", "cassandra"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    async with sqlite_or_cassandra(
        request,
        lambda: SqliteAnalyticsStore.at(tmp_path / "analytics.db"),
        lambda engine: engine.analytics,
    ) as found:
        yield found


@pytest.fixture
def day() -> str:
    """A day of the test's own (the Cassandra keyspace is shared between tests and runs)."""
    return f"t-{uuid.uuid4().hex[:10]}"


async def test_analytics_counters_add_up_per_day_and_name(store: AnalyticsStore, day: str) -> None:
    other = f"{day}-next"
    assert await store.day(day) == {}
    await store.add({(day, "accepted.direct.count"): 3, (day, "accepted.direct.bytes"): 120})
    await store.add({(day, "accepted.direct.count"): 2, (other, "accepted.group.count"): 7})
    assert await store.day(day) == {"accepted.direct.count": 5, "accepted.direct.bytes": 120}
    assert await store.day(other) == {"accepted.group.count": 7}


async def test_analytics_concurrent_adds_are_not_lost(store: AnalyticsStore, day: str) -> None:
    await asyncio.gather(*(store.add({(day, "stored.message.count"): 1}) for _ in range(25)))
    assert await store.day(day) == {"stored.message.count": 25}


async def test_analytics_ping(store: AnalyticsStore) -> None:
    await store.ping()
