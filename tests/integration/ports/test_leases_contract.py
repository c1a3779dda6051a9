"""ShardLeases contract: each write applies only while its condition holds, and two
writers racing for one shard end with one holder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contract_support import sqlite_or_cassandra
from tidings.core.leases import NEVER_MS, LeaseOp, LeaseRow, OpKind
from tidings.engines.embedded.leases import SqliteShardLeases
from tidings.ports import ShardLeases


@pytest.fixture(params=["embedded", "cassandra"])
async def leases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ShardLeases]:
    async with sqlite_or_cassandra(
        request, lambda: SqliteShardLeases.at(tmp_path / "leases.db"), lambda e: e.leases
    ) as found:
        yield found


@pytest.fixture
def shard() -> str:
    """A shard of the test's own (the Cassandra keyspace is shared between tests)."""
    return f"s-{uuid.uuid4().hex[:10]}"


def op(kind: OpKind, shard: str, owner: str, epoch: int, until: int, **kw: int) -> LeaseOp:
    return LeaseOp(kind, shard, owner, epoch, until, **kw)


async def test_a_lease_is_created_once_and_renewed_only_by_its_owner_at_its_epoch(
    leases: ShardLeases, shard: str
) -> None:
    assert await leases.read(shard) is None
    assert await leases.write(op(OpKind.CREATE, shard, "a", 1, 1_000)) == (
        True,
        LeaseRow(shard, "a", 1, 1_000),
    )
    # A second create finds a's row and changes nothing.
    assert await leases.write(op(OpKind.CREATE, shard, "b", 1, 9_000)) == (
        False,
        LeaseRow(shard, "a", 1, 1_000),
    )
    renewed = await leases.write(op(OpKind.RENEW, shard, "a", 1, 2_000, expected_epoch=1))
    assert renewed == (True, LeaseRow(shard, "a", 1, 2_000))
    for owner, epoch in (("b", 1), ("a", 2)):
        refused = await leases.write(
            op(OpKind.RENEW, shard, owner, epoch, 5_000, expected_epoch=epoch)
        )
        assert refused == (False, LeaseRow(shard, "a", 1, 2_000))
    assert await leases.read(shard) == LeaseRow(shard, "a", 1, 2_000)


async def test_a_take_needs_the_old_epoch_and_a_lapsed_lease(
    leases: ShardLeases, shard: str
) -> None:
    await leases.write(op(OpKind.CREATE, shard, "a", 1, 2_000))
    # Not lapsed yet (until 2,000 is not below 2,000), then a wrong epoch.
    for expected, lapsed_before in ((1, 2_000), (0, 3_000)):
        take = op(
            OpKind.TAKE,
            shard,
            "b",
            2,
            9_000,
            expected_epoch=expected,
            lapsed_before_ms=lapsed_before,
        )
        assert await leases.write(take) == (False, LeaseRow(shard, "a", 1, 2_000))
    take = op(OpKind.TAKE, shard, "b", 2, 9_000, expected_epoch=1, lapsed_before_ms=2_001)
    assert await leases.write(take) == (True, LeaseRow(shard, "b", 2, 9_000))
    # The old owner's renewal is refused now, and tells it who holds the shard.
    stale = await leases.write(op(OpKind.RENEW, shard, "a", 1, 12_000, expected_epoch=1))
    assert stale == (False, LeaseRow(shard, "b", 2, 9_000))


async def test_a_release_ends_the_lease_and_its_owner_may_take_it_again_at_once(
    leases: ShardLeases, shard: str
) -> None:
    await leases.write(op(OpKind.CREATE, shard, "a", 3, 50_000))
    released = await leases.write(op(OpKind.RELEASE, shard, "a", 3, 0, expected_epoch=3))
    assert released == (True, LeaseRow(shard, "a", 3, 0))
    back = op(OpKind.TAKE, shard, "a", 4, 60_000, expected_epoch=3, lapsed_before_ms=NEVER_MS)
    assert await leases.write(back) == (True, LeaseRow(shard, "a", 4, 60_000))


async def test_racing_takers_end_with_one_holder(leases: ShardLeases, shard: str) -> None:
    await leases.write(op(OpKind.CREATE, shard, "gone", 1, 0))
    takers = [f"r{i}" for i in range(6)]
    outcomes = await asyncio.gather(
        *(
            leases.write(op(OpKind.TAKE, shard, r, 2, 10_000, expected_epoch=1, lapsed_before_ms=1))
            for r in takers
        )
    )
    winners = [r for r, (applied, _) in zip(takers, outcomes, strict=True) if applied]
    assert len(winners) == 1
    holder = LeaseRow(shard, winners[0], 2, 10_000)
    assert all(row == holder for _, row in outcomes)
    assert await leases.read(shard) == holder
