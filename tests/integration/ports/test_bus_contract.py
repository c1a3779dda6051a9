"""EventBus contract: ordering, consumer groups, commits, rebalances."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tidings.engines.embedded.bus import EmbeddedBus
from tidings.ports import Consumer, EventBus, Record

# --------------------------------------------------------------------------- fixture


@pytest.fixture(params=["embedded"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventBus]:
    assert request.param == "embedded"
    engine = EmbeddedBus(tmp_path / "bus.db")
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


# --------------------------------------------------------------------------- helpers


async def drain(consumer: Consumer, quiet: float = 0.05) -> list[Record]:
    """Poll until a poll comes back empty."""
    out: list[Record] = []
    while batch := await consumer.poll(max_records=7, timeout=quiet):
        out.extend(batch)
    return out


async def drain_all(consumers: Sequence[Consumer], quiet: float = 0.05) -> list[list[Record]]:
    """Poll every member in turn until a full round brings nothing."""
    seen: list[list[Record]] = [[] for _ in consumers]
    while True:
        progressed = False
        for index, consumer in enumerate(consumers):
            batch = await consumer.poll(max_records=7, timeout=quiet)
            seen[index].extend(batch)
            progressed = progressed or bool(batch)
        if not progressed:
            return seen


def values(records: Sequence[Record]) -> list[bytes]:
    return [r.value for r in records]


def by_partition(records: Sequence[Record]) -> dict[int, list[Record]]:
    parts: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        parts[record.partition].append(record)
    return parts


KEYS = [f"user-{i}" for i in range(24)]


async def produce_spread(bus: EventBus, topic: str, per_key: int = 3) -> list[tuple[str, bytes]]:
    """Interleave ``per_key`` records for each of many keys; returns what was produced."""
    produced = [(key, f"{key}#{n}".encode()) for n in range(per_key) for key in KEYS]
    await bus.produce(topic, produced[: len(produced) // 2])
    await bus.produce(topic, produced[len(produced) // 2 :])
    return produced


def identity(records: Sequence[Record]) -> set[tuple[int, int]]:
    return {(r.partition, r.offset) for r in records}


# --------------------------------------------------------------------------- event bus


async def test_bus_keeps_produce_order_per_key_and_same_key_same_partition(bus: EventBus) -> None:
    await bus.ensure_topic("orders", 4)
    produced = await produce_spread(bus, "orders")
    consumer = bus.consumer("orders", "g")
    try:
        records = await drain(consumer)
    finally:
        await consumer.close()

    assert sorted(values(records)) == sorted(v for _, v in produced)
    per_key: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        assert record.topic == "orders"
        assert 0 <= record.partition < 4
        per_key[record.key].append(record)
    for key in KEYS:
        assert values(per_key[key]) == [f"{key}#{n}".encode() for n in range(3)]
        assert len({r.partition for r in per_key[key]}) == 1
    for part_records in by_partition(records).values():
        offsets = [r.offset for r in part_records]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == len(offsets)
    assert len(by_partition(records)) > 1  # many keys spread over partitions


async def test_bus_poll_returns_nothing_on_empty_topic(bus: EventBus) -> None:
    await bus.ensure_topic("empty", 2)
    consumer = bus.consumer("empty", "g")
    try:
        assert await consumer.poll(max_records=10, timeout=0.05) == []
    finally:
        await consumer.close()


async def test_bus_poll_wakes_up_on_produce(bus: EventBus) -> None:
    await bus.ensure_topic("wake", 1)
    consumer = bus.consumer("wake", "g")
    try:
        polling = asyncio.create_task(consumer.poll(max_records=10, timeout=5.0))
        await asyncio.sleep(0.05)
        await bus.produce("wake", [("k", b"v")])
        records = await asyncio.wait_for(polling, timeout=5.0)
        assert values(records) == [b"v"]
    finally:
        await consumer.close()


async def test_bus_resumes_after_last_commit_at_least_once(bus: EventBus) -> None:
    await bus.ensure_topic("jobs", 3)
    produced = await produce_spread(bus, "jobs")
    first = bus.consumer("jobs", "workers")
    records = await drain(first)
    assert len(records) == len(produced)
    # commit the first half of every partition, then "crash" without committing the rest
    committed: list[Record] = []
    for part_records in by_partition(records).values():
        committed.extend(part_records[: len(part_records) // 2])
    await first.commit(committed)
    await first.close()

    second = bus.consumer("jobs", "workers")
    try:
        again = await drain(second)
        assert identity(again) == identity(records) - identity(committed)
        for part, part_records in by_partition(again).items():
            expected = [r for r in by_partition(records)[part] if r not in committed]
            assert part_records == expected
        await second.commit(again)
    finally:
        await second.close()

    third = bus.consumer("jobs", "workers")
    try:
        assert await drain(third) == []
        await bus.produce("jobs", [("late", b"late")])
        assert values(await drain(third)) == [b"late"]
    finally:
        await third.close()


async def test_bus_commit_covers_everything_before_in_the_partition(bus: EventBus) -> None:
    await bus.ensure_topic("single", 1)
    await bus.produce("single", [("k", str(i).encode()) for i in range(6)])
    first = bus.consumer("single", "g")
    records = await drain(first)
    await first.commit([records[3]])  # only the fourth: implies 0..3
    await first.close()
    second = bus.consumer("single", "g")
    try:
        assert values(await drain(second)) == [b"4", b"5"]
    finally:
        await second.close()


async def test_bus_group_members_split_partitions(bus: EventBus) -> None:
    await bus.ensure_topic("split", 4)
    produced = await produce_spread(bus, "split")
    members = [bus.consumer("split", "g"), bus.consumer("split", "g")]
    try:
        seen = await drain_all(members)
    finally:
        for member in members:
            await member.close()
    a, b = (identity(s) for s in seen)
    assert a, "both members get partitions"
    assert b, "both members get partitions"
    assert not a & b, "no record is seen by both members"
    assert len(a | b) == len(produced)
    assert not {r.partition for r in seen[0]} & {r.partition for r in seen[1]}


async def test_bus_member_leaving_mid_poll_hands_over_its_partitions(bus: EventBus) -> None:
    await bus.ensure_topic("handover", 4)
    produced = await produce_spread(bus, "handover")
    stays = bus.consumer("handover", "g")
    leaves = bus.consumer("handover", "g")
    try:
        polling = asyncio.create_task(stays.poll(max_records=1, timeout=1.0))
        await asyncio.sleep(0)  # the poll is now waiting on the log
        await leaves.close()
        first = await polling
        records = first + await drain(stays)
    finally:
        await stays.close()
    assert {v for _, v in produced} <= set(values(records))


async def test_bus_groups_are_independent(bus: EventBus) -> None:
    await bus.ensure_topic("shared", 2)
    produced = await produce_spread(bus, "shared", per_key=2)
    a = bus.consumer("shared", "group-a")
    b = bus.consumer("shared", "group-b")
    seen_a = await drain(a)
    seen_b = await drain(b)
    assert sorted(values(seen_a)) == sorted(values(seen_b)) == sorted(v for _, v in produced)

    await a.commit(seen_a)  # group-a is done; group-b crashes before committing
    await a.close()
    await b.close()

    b_again = bus.consumer("shared", "group-b")
    a_again = bus.consumer("shared", "group-a")
    try:
        assert identity(await drain(b_again)) == identity(seen_b)
        assert await drain(a_again) == []
    finally:
        await b_again.close()
        await a_again.close()


async def test_bus_ensure_topic_never_shrinks(bus: EventBus) -> None:
    await bus.ensure_topic("grow", 4)
    await bus.ensure_topic("grow", 1)
    await bus.ensure_topic("grow", 4)  # idempotent
    await produce_spread(bus, "grow", per_key=1)
    consumer = bus.consumer("grow", "g")
    try:
        records = await drain(consumer)
    finally:
        await consumer.close()
    assert len(records) == len(KEYS)
    assert {r.partition for r in records} == {0, 1, 2, 3}


async def test_bus_ping(bus: EventBus) -> None:
    await bus.ping()
