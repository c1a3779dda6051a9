"""Fixtures shared by the integration tests of the real engines."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from servers import ENGINE_SETS, as_settings, unique_region
from tidings.engines.cassandra import CassandraConfig, CassandraEngine

CONTRACT_KEYSPACE = "tidings_contract"
"""Shared by the port contract files and runs (migrated once per session, kept between
runs); tests stay apart by per-test prefixes of their ids."""


async def _migrate(config: CassandraConfig) -> None:
    engine = CassandraEngine(config)
    await engine.start()  # applies the missing migrations
    await engine.close()


@pytest.fixture(scope="session")
def cassandra_config(cassandra_env: dict[str, str]) -> CassandraConfig:
    """The contract keyspace, migrated; engines built from it skip the migration step."""
    config = CassandraConfig(
        contact_points=tuple(cassandra_env["TIDINGS_CASSANDRA_CONTACT_POINTS"].split(",")),
        port=int(cassandra_env["TIDINGS_CASSANDRA_PORT"]),
        local_dc=cassandra_env["TIDINGS_CASSANDRA_LOCAL_DC"],
        keyspace=CONTRACT_KEYSPACE,
    )
    with ThreadPoolExecutor(1) as pool:  # its own event loop, away from the tests' loops
        pool.submit(asyncio.run, _migrate(config)).result(timeout=300)
    return dataclasses.replace(config, migrate=False)


@pytest.fixture(params=ENGINE_SETS)
def engine_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings of one engine set, for tests that start their own gateway (on a fake
    clock: ``limits_support.clocked``); the distributed one in a region of its own."""
    if request.param == "embedded":
        return {}
    return {**as_settings(request.getfixturevalue("distributed_env")), "region": unique_region()}
