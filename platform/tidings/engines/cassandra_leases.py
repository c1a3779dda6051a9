"""The ``ShardLeases`` port on Cassandra: one row per shard, lightweight transactions at
SERIAL (a Paxos round among a majority of the replicas of *every* datacenter, not only
this region's), and reads at SERIAL, which settle an unfinished one first.

A timed-out lightweight transaction may or may not have applied; it comes out as
``Unavailable`` and the keeper trusts nothing new until a later answer says.
"""

from __future__ import annotations

import asyncio

from cassandra import ConsistencyLevel  # type: ignore[import-untyped]

from tidings.core.leases import LeaseOp, LeaseRow, OpKind
from tidings.engines.cassandra_schema import Cql, Row, Statements


class CassandraShardLeases:
    def __init__(self, cql: Cql, keyspace: str) -> None:
        self.cql, self.ks = cql, keyspace
        self.q = Statements()

    async def prepare(self) -> None:
        table = f"{self.ks}.shard_leases"
        statements = {
            "leases.read": f"SELECT shard, owner, epoch, until_ms FROM {table} WHERE shard = ?",
            "leases.create": f"INSERT INTO {table} (shard, owner, epoch, until_ms) "
            "VALUES (?, ?, ?, ?) IF NOT EXISTS",
            "leases.renew": f"UPDATE {table} SET until_ms = ? WHERE shard = ? "
            "IF owner = ? AND epoch = ?",
            "leases.take": f"UPDATE {table} SET owner = ?, epoch = ?, until_ms = ? "
            "WHERE shard = ? IF epoch = ? AND until_ms < ?",
        }
        prepared = await asyncio.gather(
            *(self.cql.prepare(name, cql) for name, cql in statements.items())
        )
        for query in prepared:
            if query.name == "leases.read":
                query.prepared.consistency_level = ConsistencyLevel.SERIAL
            else:
                query.prepared.serial_consistency_level = ConsistencyLevel.SERIAL
        self.q = Statements({query.name: query for query in prepared})

    async def read(self, shard: str) -> LeaseRow | None:
        row = await self.cql.one(self.q["leases.read"], (shard,))
        return None if row is None else _lease(row)

    async def write(self, op: LeaseOp) -> tuple[bool, LeaseRow | None]:
        params: tuple[object, ...]
        if op.kind is OpKind.CREATE:
            query, params = self.q["leases.create"], (op.shard, op.owner, op.epoch, op.until_ms)
        elif op.kind is OpKind.TAKE:
            query = self.q["leases.take"]
            params = (
                op.owner,
                op.epoch,
                op.until_ms,
                op.shard,
                op.expected_epoch,
                op.lapsed_before_ms,
            )
        else:  # RENEW and RELEASE extend or end the lease of the same owner and epoch
            query = self.q["leases.renew"]
            params = (op.until_ms, op.shard, op.owner, op.expected_epoch)
        applied, _ = await self.cql.applied(query, params)
        if applied:
            return True, LeaseRow(op.shard, op.owner, op.epoch, op.until_ms)
        # A refused condition answers only the columns it compared: read the whole row.
        return False, await self.read(op.shard)


def _lease(row: Row) -> LeaseRow:
    return LeaseRow(str(row["shard"]), str(row["owner"]), int(row["epoch"]), int(row["until_ms"]))
