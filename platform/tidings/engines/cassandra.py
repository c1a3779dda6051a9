"""The Cassandra engine: ``UserStore``, ``MessageStore``, ``AnalyticsStore`` and
``ShardLeases`` on a real cluster.

One ``CassandraEngine`` owns one driver ``Cluster`` (libev reactor, protocol v4) with a
single execution profile: token-aware routing over ``DCAwareRoundRobinPolicy(local_dc)``,
``LOCAL_QUORUM`` for reads and writes, ``LOCAL_SERIAL`` for lightweight transactions.
Every query is a prepared statement (prepared once in ``start``), run without blocking
the event loop (see ``cassandra_schema.Cql``). ``start`` applies the schema migrations
first when ``config.migrate`` is set.

- ``cassandra_schema``: the asyncio bridge, driver errors -> ``Unavailable``, migrations;
- ``cassandra_users``: the ``UserStore`` port;
- ``cassandra_inbox``: the ``MessageStore`` port.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cassandra import ConsistencyLevel, ProtocolVersion  # type: ignore[import-untyped]
from cassandra.auth import PlainTextAuthProvider  # type: ignore[import-untyped]
from cassandra.cluster import (  # type: ignore[import-untyped]
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
)
from cassandra.io.libevreactor import LibevConnection  # type: ignore[import-untyped]
from cassandra.policies import (  # type: ignore[import-untyped]
    DCAwareRoundRobinPolicy,
    TokenAwarePolicy,
)
from cassandra.query import dict_factory  # type: ignore[import-untyped]

from tidings.engines.cassandra_analytics import CassandraAnalyticsStore
from tidings.engines.cassandra_inbox import CassandraMessageStore
from tidings.engines.cassandra_leases import CassandraShardLeases
from tidings.engines.cassandra_schema import (
    DC_NAME,
    DRIVER_ERRORS,
    KEYSPACE_NAME,
    SOCKET_OPTIONS,
    Cql,
    migrate,
    unavailable,
)
from tidings.engines.cassandra_users import CassandraUserStore
from tidings.errors import Unavailable
from tidings.ports import AnalyticsStore, MessageStore, ShardLeases, UserStore

log = logging.getLogger(__name__)

PROTOCOL_VERSION = ProtocolVersion.V4
"""Named, so the driver does not negotiate (and warn). v4, not v5: v5 wraps every frame
in checksummed segments that the Python driver frames in Python, a few per cent of a
gateway's CPU under load; nothing here needs what v5 adds."""
REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CassandraConfig:
    contact_points: tuple[str, ...] = ("127.0.0.1",)
    port: int = 9042
    local_dc: str = "local"
    keyspace: str = "tidings"
    replication: Mapping[str, int] = field(default_factory=dict)
    """Replicas per datacenter for a new keyspace; empty means ``{local_dc: 1}``."""
    username: str = ""
    password: str = ""
    migrate: bool = True
    inbox_ttl_s: int = 30 * 24 * 3600

    def __post_init__(self) -> None:
        if not self.contact_points:
            raise ValueError("cassandra: at least one contact point is needed")
        if not KEYSPACE_NAME.match(self.keyspace):
            raise ValueError(
                f"cassandra keyspace {self.keyspace!r} must match {KEYSPACE_NAME.pattern}"
            )
        if not DC_NAME.match(self.local_dc):
            raise ValueError(f"cassandra local datacenter {self.local_dc!r} is not valid")
        if self.inbox_ttl_s < 1:
            raise ValueError("cassandra inbox TTL must be at least one second")

    @property
    def where(self) -> str:
        return f"{','.join(self.contact_points)}:{self.port} (dc {self.local_dc})"

    @property
    def keyspace_replication(self) -> dict[str, int]:
        return dict(self.replication) or {self.local_dc: 1}


def parse_replication(text: str, local_dc: str) -> dict[str, int]:
    """``"us-east:3,eu-west:3"`` -> ``{"us-east": 3, "eu-west": 3}``; empty -> ``{local_dc: 1}``."""
    if not text.strip():
        return {local_dc: 1}
    out: dict[str, int] = {}
    for part in text.split(","):
        dc, sep, count = part.strip().partition(":")
        dc, count = dc.strip(), count.strip()
        if not sep or not DC_NAME.match(dc) or not re.fullmatch(r"[0-9]{1,2}", count):
            raise ValueError(
                f"cassandra replication {text!r}: {part.strip()!r} is not 'datacenter:replicas' "
                "(e.g. 'us-east:3,eu-west:3')"
            )
        if dc in out:
            raise ValueError(f"cassandra replication {text!r} names {dc!r} twice")
        replicas = int(count)
        if not 1 <= replicas <= 32:
            raise ValueError(f"cassandra replication {text!r}: replicas for {dc!r} must be 1..32")
        out[dc] = replicas
    return out


class CassandraEngine:
    """Both stores on one cluster connection; ``start`` before use, ``close`` after."""

    def __init__(self, config: CassandraConfig) -> None:
        self.config = config
        self._cql = Cql(config.where)
        self._cluster: Any = None
        self._users = CassandraUserStore(self._cql, config.keyspace)
        self._messages = CassandraMessageStore(self._cql, config.keyspace, config.inbox_ttl_s)
        self._analytics = CassandraAnalyticsStore(self._cql, config.keyspace)
        self._leases = CassandraShardLeases(self._cql, config.keyspace)
        self.users: UserStore = self._users
        self.messages: MessageStore = self._messages
        self.analytics: AnalyticsStore = self._analytics
        self.leases: ShardLeases = self._leases

    def _new_cluster(self) -> Any:
        config = self.config
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(
                DCAwareRoundRobinPolicy(local_dc=config.local_dc)
            ),
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
            request_timeout=REQUEST_TIMEOUT_S,
            row_factory=dict_factory,
        )
        auth = (
            PlainTextAuthProvider(username=config.username, password=config.password)
            if config.username
            else None
        )
        return Cluster(
            contact_points=list(config.contact_points),
            port=config.port,
            protocol_version=PROTOCOL_VERSION,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connection_class=LibevConnection,
            sockopts=SOCKET_OPTIONS,
            auth_provider=auth,
            connect_timeout=CONNECT_TIMEOUT_S,
            control_connection_timeout=CONNECT_TIMEOUT_S,
        )

    async def start(self) -> None:
        if self._cluster is not None:
            return
        config = self.config
        cluster = self._new_cluster()
        try:
            session = await asyncio.to_thread(cluster.connect)
        except DRIVER_ERRORS as exc:
            await asyncio.to_thread(cluster.shutdown)
            raise unavailable(exc, "connect", config.where) from exc
        self._cluster, self._cql.session = cluster, session
        try:
            if config.migrate:
                applied = await migrate(session, config.keyspace, config.keyspace_replication)
                if applied:
                    log.info("cassandra: %s migrated to %s", config.keyspace, applied)
            await asyncio.gather(
                self._users.prepare(),
                self._messages.prepare(),
                self._analytics.prepare(),
                self._leases.prepare(),
            )
        except BaseException:
            await self.close()
            raise
        log.info("cassandra: connected to %s, keyspace %s", config.where, config.keyspace)

    async def close(self) -> None:
        cluster, self._cluster, self._cql.session = self._cluster, None, None
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    async def ping(self) -> None:
        if self._cluster is None:
            raise Unavailable(f"cassandra at {self.config.where}: the engine is not started")
        await self._users.ping()


__all__ = ["CassandraConfig", "CassandraEngine", "parse_replication"]
