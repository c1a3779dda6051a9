"""The ``AnalyticsStore`` port on Cassandra: one counter per (day, name).

Counter updates are not idempotent: a batch the analytics worker replays after a crash
counts twice, which the worker documents as acceptable for statistics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tidings.engines.cassandra_schema import Cql, Statements, gather_bounded

PARALLEL_UPDATES = 32


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
        # Counter updates cannot share a batch with other partitions cheaply; a day is one
        # partition, so these spread over few replicas anyway.
        await gather_bounded(
            PARALLEL_UPDATES,
            *(
                self.cql.run(self.q["analytics.add"], (value, day, name))
                for (day, name), value in counts.items()
                if value
            ),
        )

    async def day(self, day: str) -> dict[str, int]:
        rows = await self.cql.run(self.q["analytics.day"], (day,))
        return {str(r["name"]): int(r["value"]) for r in rows}

    async def ping(self) -> None:
        await self.cql.run(self.q["analytics.ping"])
