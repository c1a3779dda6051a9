"""The ``AnalyticsStore`` port on Cassandra: one counter per (day, name).

Counter updates are not idempotent: a batch the analytics worker replays after a crash
counts twice, which the worker documents as acceptable for statistics.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from tidings.engines.cassandra_schema import Cql, Query, Statements, gather_bounded

PARALLEL_DAYS = 8


class CassandraAnalyticsStore:
    def __init__(self, cql: Cql, keyspace: str) -> None:
        self.cql, self.ks = cql, keyspace
        self.q = Statements()

    async def prepare(self) -> None:
        statements = {
            "analytics.add": f"UPDATE {self.ks}.analytics_daily SET value = value + ? "
            "WHERE day = ? AND name = ?",
            "analytics.day": f"SELECT name, value FROM {self.ks}.analytics_daily WHERE day = ?",
            "analytics.ping": "SELECT release_version FROM system.local",
        }
        prepared = await asyncio.gather(
            *(self.cql.prepare(name, cql) for name, cql in statements.items())
        )
        self.q = Statements({query.name: query for query in prepared})

    async def add(self, counts: Mapping[tuple[str, str], int]) -> None:
        # A day is one partition, and a day's counters go in one counter batch: it is
        # applied atomically and in isolation, so a reader of the day never sees a
        # kind's count without its bytes (as separate updates could show it).
        by_day: dict[str, list[tuple[Query, Sequence[Any]]]] = defaultdict(list)
        for (day, name), value in counts.items():
            if value:
                by_day[day].append((self.q["analytics.add"], (value, day, name)))
        await gather_bounded(
            PARALLEL_DAYS,
            *(
                self.cql.batch("analytics: a day's counters", parts, counter=True)
                for parts in by_day.values()
            ),
        )

    async def day(self, day: str) -> dict[str, int]:
        rows = await self.cql.run(self.q["analytics.day"], (day,))
        return {str(r["name"]): int(r["value"]) for r in rows}

    async def ping(self) -> None:
        await self.cql.run(self.q["analytics.ping"])
