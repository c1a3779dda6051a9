"""Helpers of the port contract suite shared by its fixtures and tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis

from tidings.engines.cassandra import CassandraEngine
from tidings.ports import PresenceStore


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


REDIS_TIME_UNIT = 0.1
"""Real seconds per test second on Redis, whose TTLs run on the server's real clock."""


@dataclass
class PresenceEnv:
    """A store plus its notion of time: a fake clock (embedded) or real time (Redis).

    Tests express TTLs and waits in test seconds (``ttl(...)``, ``advance(...)``); the
    embedded engine reads a fake clock moved by ``advance``, Redis gets real TTLs scaled
    by ``unit`` and ``advance`` sleeps that long, so the assertions are the same for both.
    """

    store: PresenceStore
    clock: FakeClock | None = None
    unit: float = 1.0

    def ttl(self, seconds: float) -> float:
        return seconds * self.unit

    def now(self) -> float:
        return self.clock.now if self.clock is not None else time.time()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` (test seconds) pass as far as the store's TTLs are concerned."""
        if self.clock is not None:
            self.clock.now += seconds * self.unit
        else:
            await asyncio.sleep(seconds * self.unit)


async def delete_prefixed(url: str, prefix: str) -> None:
    """SCAN + DEL every key under ``prefix``."""
    client = Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=500):
            await client.delete(key)
    finally:
        await client.aclose()


class Embedded(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...


T = TypeVar("T")


@contextlib.asynccontextmanager
async def sqlite_or_cassandra(
    request: Any, embedded: Callable[[], Embedded], pick: Callable[[CassandraEngine], T]
) -> AsyncIterator[Any]:
    """The store a contract fixture's param names: ``embedded()`` for "embedded", else
    ``pick`` of a Cassandra engine on the session's contract keyspace."""
    if request.param == "embedded":
        store = embedded()
        await store.start()
        try:
            yield store
        finally:
            await store.close()
        return
    assert request.param == "cassandra"
    engine = CassandraEngine(request.getfixturevalue("cassandra_config"))
    await engine.start()
    try:
        yield pick(engine)
    finally:
        await engine.close()
