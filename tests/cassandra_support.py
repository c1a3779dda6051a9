"""Engines on the real Cassandra of the test session, for tests of the Cassandra stores."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tidings.engines.cassandra import CassandraConfig, CassandraEngine
from tidings.engines.cassandra_schema import Query, Row


@contextlib.asynccontextmanager
async def engine_on(config: CassandraConfig) -> AsyncIterator[CassandraEngine]:
    """A started engine, closed on the way out."""
    engine = CassandraEngine(config)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


def counted(store: Any) -> Counter[str]:
    """Count the statements ``store`` (a Cassandra store) runs from now on, by name; each
    statement of a batch counts."""
    issued: Counter[str] = Counter()
    run, batch, shared = store.cql.run, store.cql.batch, store.cql.write_shared

    async def counting_run(query: Query, params: Sequence[Any] = ()) -> list[Row]:
        issued[query.name] += 1
        return await run(query, params)

    async def counting_batch(
        name: str, parts: Sequence[tuple[Query, Sequence[Any]]], **kind: bool
    ) -> list[Row]:
        issued.update(query.name for query, _ in parts)
        return await batch(name, parts, **kind)

    async def counting_shared(name: str, parts: Sequence[tuple[Query, Sequence[Any]]]) -> None:
        issued.update(query.name for query, _ in parts)
        await shared(name, parts)

    store.cql.run, store.cql.batch = counting_run, counting_batch
    store.cql.write_shared = counting_shared
    return issued
