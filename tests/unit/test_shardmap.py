"""The shard map: slots, coverage validation, owner lookup and partitioning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.core.shardmap import (
    SLOTS,
    Shard,
    ShardMap,
    ShardMapError,
    partition_for,
    single_region,
    slot_for,
)


@given(st.text())
def test_slot_for_is_in_range_and_stable(user_id: str) -> None:
    slot = slot_for(user_id)
    assert 0 <= slot < SLOTS
    assert slot_for(user_id) == slot


def test_single_region_covers_every_slot() -> None:
    shard_map = single_region("eu", shards=4)
    assert len(shard_map.shards) == 4
    assert shard_map.shards[0].first_slot == 0
    assert shard_map.shards[-1].last_slot == SLOTS - 1
    for slot in range(SLOTS):
        assert sum(s.covers(slot) for s in shard_map.shards) == 1
    assert {s.home_region for s in shard_map.shards} == {"eu"}
    assert {s.owner_region for s in shard_map.shards} == {"eu"}
    assert all(s.epoch == 1 for s in shard_map.shards)


def test_owner_region_lookup() -> None:
    shard_map = ShardMap(
        (
            Shard("b", 512, SLOTS - 1, "us", "us"),
            Shard("a", 0, 511, "eu", "ap"),
        )
    )
    assert [s.name for s in shard_map.shards] == ["a", "b"]  # sorted on construction
    for user in (f"user-{i}" for i in range(200)):
        expected = "ap" if slot_for(user) <= 511 else "us"
        assert shard_map.owner_region(user) == expected
        assert shard_map.shard_for(user).covers(slot_for(user))


@pytest.mark.parametrize("count", [0, -1, SLOTS + 1])
def test_single_region_rejects_bad_shard_counts(count: int) -> None:
    with pytest.raises(ShardMapError):
        single_region("eu", count)


@pytest.mark.parametrize(
    "shards",
    [
        pytest.param((), id="empty"),
        pytest.param((Shard("a", 0, 10, "r", "r"), Shard("b", 12, SLOTS - 1, "r", "r")), id="gap"),
        pytest.param(
            (Shard("a", 0, 10, "r", "r"), Shard("b", 10, SLOTS - 1, "r", "r")), id="overlap"
        ),
        pytest.param((Shard("a", 0, SLOTS - 2, "r", "r"),), id="short"),
        pytest.param((Shard("a", 0, SLOTS, "r", "r"),), id="past-the-end"),
        pytest.param((Shard("a", 1, SLOTS - 1, "r", "r"),), id="not-from-zero"),
        pytest.param(
            (
                Shard("a", 0, 5, "r", "r"),
                Shard("b", 6, 4, "r", "r"),
                Shard("c", 6, SLOTS - 1, "r", "r"),
            ),
            id="inverted",
        ),
    ],
)
def test_shard_map_rejects_bad_coverage(shards: tuple[Shard, ...]) -> None:
    with pytest.raises(ShardMapError):
        ShardMap(shards)


@given(st.text(), st.integers(min_value=1, max_value=512))
def test_partition_for_is_stable_and_in_range(key: str, partitions: int) -> None:
    part = partition_for(key, partitions)
    assert 0 <= part < partitions
    assert partition_for(key, partitions) == part


@given(st.integers(min_value=1, max_value=SLOTS), st.lists(st.text(), min_size=1, max_size=20))
def test_every_user_maps_to_exactly_one_shard(count: int, users: list[str]) -> None:
    shard_map = single_region("eu", count)
    assert len(shard_map.shards) == count
    for user in users:
        slot = slot_for(user)
        covering = [s for s in shard_map.shards if s.covers(slot)]
        assert len(covering) == 1
        assert shard_map.shard_for(user) == covering[0]
