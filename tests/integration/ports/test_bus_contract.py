"""EventBus contract: ordering, consumer groups, commits, rebalances."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tidings.engines.embedded.bus import EmbeddedBus
from tidings.engines.kafka import KafkaBus
from tidings.ports import Consumer, EventBus, Record

# --------------------------------------------------------------------------- fixture


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def name(suffix: str) -> Callable[[str], str]:
    """Topic and group names of this test: unique, as one Kafka broker serves the session."""
    return lambda base: f"{base}-{suffix}"


@pytest.fixture(params=["embedded", "kafka"])
async def bus(
    request: pytest.FixtureRequest, tmp_path: Path, suffix: str
) -> AsyncIterator[EventBus]:
    engine: EmbeddedBus | KafkaBus
    if request.param == "kafka":
        engine = KafkaBus(request.getfixturevalue("kafka_bootstrap"))
    else:
        engine = EmbeddedBus(tmp_path / "bus.db")
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()
        if isinstance(engine, KafkaBus):
            await delete_topics(engine.bootstrap, suffix)


async def delete_topics(bootstrap: str, suffix: str) -> None:
    """Drop this test's topics, so the session's broker does not pile them up."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.endswith(f"-{suffix}")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


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


async def join(members: Sequence[Consumer]) -> None:
    """Let every member join its group before records flow (call on an empty topic).

    A Kafka member joins on its first poll; one that polls alone first rightly reads
    every partition, and what it read without committing goes again to the member
    joining after it (``test_kafka_bus`` covers that rebalance).
    """
    assert await drain_all(members) == [[] for _ in members]


async def drain_until(
    consumer: Consumer, wanted: set[bytes], patience: float = 30.0
) -> list[Record]:
    """Poll until every ``wanted`` value came, or ``patience`` seconds passed.

    For a handover: a Kafka member learns that partitions moved to it at its next
    heartbeat, so a quiet poll does not yet mean nothing more will come.
    """
    out: list[Record] = []
    loop = asyncio.get_running_loop()
    give_up = loop.time() + patience
    while not wanted <= set(values(out)) and loop.time() < give_up:
        out.extend(await consumer.poll(max_records=7, timeout=0.05))
    return out


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


async def test_bus_keeps_produce_order_per_key_and_same_key_same_partition(
    bus: EventBus, name: Callable[[str], str]
) -> None:
    topic = name("orders")
    await bus.ensure_topic(topic, 4)
    produced = await produce_spread(bus, topic)
    consumer = bus.consumer(topic, name("g"))
    try:
        records = await drain(consumer)
    finally:
        await consumer.close()

    assert sorted(values(records)) == sorted(v for _, v in produced)
    per_key: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        assert record.topic == topic
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


async def test_bus_poll_returns_nothing_on_empty_topic(
    bus: EventBus, name: Callable[[str], str]
) -> None:
    await bus.ensure_topic(name("empty"), 2)
    consumer = bus.consumer(name("empty"), name("g"))
    try:
        assert await consumer.poll(max_records=10, timeout=0.05) == []
    finally:
        await consumer.close()


async def test_bus_poll_wakes_up_on_produce(bus: EventBus, name: Callable[[str], str]) -> None:
    topic = name("wake")
    await bus.ensure_topic(topic, 1)
    consumer = bus.consumer(topic, name("g"))
    try:
        polling = asyncio.create_task(consumer.poll(max_records=10, timeout=5.0))
        await asyncio.sleep(0.05)
        await bus.produce(topic, [("k", b"v")])
        records = await asyncio.wait_for(polling, timeout=5.0)
        assert values(records) == [b"v"]
    finally:
        await consumer.close()


async def test_bus_resumes_after_last_commit_at_least_once(
    bus: EventBus, name: Callable[[str], str]
) -> None:
    topic, group = name("jobs"), name("workers")
    await bus.ensure_topic(topic, 3)
    produced = await produce_spread(bus, topic)
    first = bus.consumer(topic, group)
    records = await drain(first)
    assert len(records) == len(produced)
    # commit the first half of every partition, then "crash" without committing the rest
    committed: list[Record] = []
    for part_records in by_partition(records).values():
        committed.extend(part_records[: len(part_records) // 2])
    await first.commit(committed)
    await first.close()

    second = bus.consumer(topic, group)
    try:
        again = await drain(second)
        assert identity(again) == identity(records) - identity(committed)
        for part, part_records in by_partition(again).items():
            expected = [r for r in by_partition(records)[part] if r not in committed]
            assert part_records == expected
        await second.commit(again)
    finally:
        await second.close()

    third = bus.consumer(topic, group)
    try:
        assert await drain(third) == []
        await bus.produce(topic, [("late", b"late")])
        assert values(await drain(third)) == [b"late"]
    finally:
        await third.close()


async def test_bus_commit_covers_everything_before_in_the_partition(
    bus: EventBus, name: Callable[[str], str]
) -> None:
    topic, group = name("single"), name("g")
    await bus.ensure_topic(topic, 1)
    await bus.produce(topic, [("k", str(i).encode()) for i in range(6)])
    first = bus.consumer(topic, group)
    records = await drain(first)
    await first.commit([records[3]])  # only the fourth: implies 0..3
    await first.close()
    second = bus.consumer(topic, group)
    try:
        assert values(await drain(second)) == [b"4", b"5"]
    finally:
        await second.close()


async def test_bus_group_members_split_partitions(
    bus: EventBus, name: Callable[[str], str]
) -> None:
    topic, group = name("split"), name("g")
    await bus.ensure_topic(topic, 4)
    members = [bus.consumer(topic, group), bus.consumer(topic, group)]
    try:
        await join(members)
        produced = await produce_spread(bus, topic)
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


async def test_bus_member_leaving_mid_poll_hands_over_its_partitions(
    bus: EventBus, name: Callable[[str], str]
) -> None:
    topic, group = name("handover"), name("g")
    await bus.ensure_topic(topic, 4)
    stays = bus.consumer(topic, group)
    leaves = bus.consumer(topic, group)
    try:
        await join([stays, leaves])
        produced = await produce_spread(bus, topic)
        polling = asyncio.create_task(stays.poll(max_records=1, timeout=1.0))
        await asyncio.sleep(0)  # the poll is now waiting on the log
        await leaves.close()
        first = await polling
        records = first + await drain_until(stays, {v for _, v in produced})
    finally:
        await stays.close()
        await leaves.close()
    assert {v for _, v in produced} <= set(values(records))


async def test_bus_groups_are_independent(bus: EventBus, name: Callable[[str], str]) -> None:
    topic = name("shared")
    await bus.ensure_topic(topic, 2)
    produced = await produce_spread(bus, topic, per_key=2)
    a = bus.consumer(topic, name("group-a"))
    b = bus.consumer(topic, name("group-b"))
    seen_a = await drain(a)
    seen_b = await drain(b)
    assert sorted(values(seen_a)) == sorted(values(seen_b)) == sorted(v for _, v in produced)

    await a.commit(seen_a)  # group-a is done; group-b crashes before committing
    await a.close()
    await b.close()

    b_again = bus.consumer(topic, name("group-b"))
    a_again = bus.consumer(topic, name("group-a"))
    try:
        assert identity(await drain(b_again)) == identity(seen_b)
        assert await drain(a_again) == []
    finally:
        await b_again.close()
        await a_again.close()


async def test_bus_ensure_topic_never_shrinks(bus: EventBus, name: Callable[[str], str]) -> None:
    topic = name("grow")
    await bus.ensure_topic(topic, 4)
    await bus.ensure_topic(topic, 1)
    await bus.ensure_topic(topic, 4)  # idempotent
    await produce_spread(bus, topic, per_key=1)
    consumer = bus.consumer(topic, name("g"))
    try:
        records = await drain(consumer)
    finally:
        await consumer.close()
    assert len(records) == len(KEYS)
    assert {r.partition for r in records} == {0, 1, 2, 3}


async def test_bus_ping(bus: EventBus) -> None:
    await bus.ping()
