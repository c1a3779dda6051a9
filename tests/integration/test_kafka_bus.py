"""The Kafka event bus beyond the port contract: rebalances under load, a broker that
cannot be reached, topic growth, concurrent topic set-up and consumer lag."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tidings.engines.kafka import KafkaBus, KafkaConsumer
from tidings.errors import Unavailable
from tidings.ports import Record

Id = tuple[int, int]  # (partition, offset)
HANDLING_S = 0.02  # a worker's durable write between poll and commit: rebalances hit it

# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def name(suffix: str) -> Callable[[str], str]:
    """Topic and group names of this test: unique, as one broker serves the session."""
    return lambda base: f"{base}-{suffix}"


@pytest.fixture
async def admin(kafka_bootstrap: str, suffix: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client of the test's own; drops the test's topics afterwards."""
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await client.start()
    try:
        yield client
        mine = [t for t in await client.list_topics() if t.endswith(f"-{suffix}")]
        if mine:
            await client.delete_topics(mine)
    finally:
        await client.close()


@pytest.fixture
async def bus(kafka_bootstrap: str, admin: AIOKafkaAdminClient) -> AsyncIterator[KafkaBus]:
    engine = KafkaBus(kafka_bootstrap)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


# --------------------------------------------------------------------------- helpers


async def drain(consumer: KafkaConsumer) -> list[Record]:
    out: list[Record] = []
    while batch := await consumer.poll(max_records=50, timeout=0.05):
        out.extend(batch)
    return out


def ids(records: Sequence[Record]) -> set[Id]:
    return {(r.partition, r.offset) for r in records}


async def until(condition: Callable[[], bool], *tasks: asyncio.Task[object]) -> None:
    """Wait for ``condition``; a task that died meanwhile fails the test at once."""
    async with asyncio.timeout(60):  # a guard against a hang, not a measurement
        while not condition():
            for task in tasks:
                if task.done():
                    task.result()
                    raise AssertionError(f"{task.get_name()} ended early")
            await asyncio.sleep(0.02)


class Ledger:
    """What the members of one group were handed, and what they committed."""

    def __init__(self) -> None:
        self.deliveries: Counter[Id] = Counter()
        self.seen_by: dict[str, set[Id]] = defaultdict(set)
        self.value_of: dict[Id, bytes] = {}
        self.committed: dict[int, int] = {}  # partition -> next offset, by successful commits
        self.uncommitted: set[Id] = set()  # polled, and the commit failed or never came
        self.again_after_commit: list[Id] = []

    def polled(self, member: str, records: Sequence[Record]) -> None:
        for r in records:
            if r.offset < self.committed.get(r.partition, 0):
                self.again_after_commit.append((r.partition, r.offset))
            self.deliveries[(r.partition, r.offset)] += 1
            self.seen_by[member].add((r.partition, r.offset))
            self.value_of[(r.partition, r.offset)] = r.value

    async def commit(self, consumer: KafkaConsumer, records: Sequence[Record]) -> None:
        try:
            await consumer.commit(records)
        except Unavailable:  # a rebalance took a partition: its records come again
            self.uncommitted |= ids(records)
            return
        for r in records:
            self.committed[r.partition] = max(self.committed.get(r.partition, 0), r.offset + 1)

    def committed_values(self) -> set[bytes]:
        return {v for (p, o), v in self.value_of.items() if o < self.committed.get(p, 0)}


async def work(member: str, consumer: KafkaConsumer, ledger: Ledger, stop: asyncio.Event) -> None:
    """Poll, handle, commit; after ``stop``, end at the first quiet poll."""
    while True:
        records = await consumer.poll(max_records=16, timeout=0.1)
        ledger.polled(member, records)
        if records:
            await asyncio.sleep(HANDLING_S)
            await ledger.commit(consumer, records)
        elif stop.is_set():
            return


async def work_then_vanish(
    member: str, consumer: KafkaConsumer, ledger: Ledger, leave: asyncio.Event
) -> list[Record]:
    """Like ``work``; after ``leave``, poll one more batch and return it uncommitted (the
    process went away before its durable write)."""
    while True:
        records = await consumer.poll(max_records=16, timeout=0.1)
        ledger.polled(member, records)
        if not records:
            continue
        if leave.is_set():
            ledger.uncommitted |= ids(records)
            return records
        await asyncio.sleep(HANDLING_S)
        await ledger.commit(consumer, records)


# --------------------------------------------------------------------------- tests


async def test_rebalance_while_records_flow_loses_nothing(
    bus: KafkaBus, name: Callable[[str], str]
) -> None:
    topic, group = name("flow"), name("workers")
    await bus.ensure_topic(topic, 4)
    ledger = Ledger()
    produced: list[bytes] = []
    stop_producing, a_leaves, b_stops = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def produce() -> None:
        n = 0
        while not stop_producing.is_set():
            batch = [(f"user-{(n + i) % 16}", f"r{n + i}".encode()) for i in range(8)]
            await bus.produce(topic, batch)
            produced.extend(v for _, v in batch)
            n += len(batch)
            await asyncio.sleep(0.01)

    a, b = bus.consumer(topic, group), bus.consumer(topic, group)
    tasks: list[asyncio.Task[object]] = []
    try:
        producer = asyncio.create_task(produce(), name="producer")
        a_task = asyncio.create_task(work_then_vanish("a", a, ledger, a_leaves), name="a")
        tasks += [producer, a_task]
        await until(lambda: len(ledger.seen_by["a"]) >= 40, *tasks)

        b_task = asyncio.create_task(work("b", b, ledger, b_stops), name="b")
        tasks.append(b_task)
        await until(lambda: len(ledger.seen_by["b"]) >= 40, *tasks)  # b joined mid-stream

        a_leaves.set()
        left_behind = await a_task
        await a.close()
        b_before = len(ledger.seen_by["b"])
        await until(lambda: len(ledger.seen_by["b"]) >= b_before + 40, producer, b_task)

        stop_producing.set()
        await producer
        await until(lambda: set(produced) <= ledger.committed_values(), b_task)
        b_stops.set()
        await b_task
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await a.close()
        await b.close()

    delivered = {ledger.value_of[i] for i in ledger.deliveries}
    assert set(produced) <= delivered
    assert len(produced) == len(set(produced)) == len(ledger.deliveries)
    assert await bus.lag(topic, group) == 0  # the broker agrees: everything committed
    # What a left uncommitted went to b; beyond that, only records whose commit had not
    # gone through were handed out twice, and a committed record never came again.
    assert ids(left_behind) <= ledger.seen_by["b"]
    duplicates = {i for i, n in ledger.deliveries.items() if n > 1}
    assert ids(left_behind) <= duplicates <= ledger.uncommitted
    assert ledger.again_after_commit == []


async def test_commit_after_a_rebalance_took_partitions_raises_and_loses_nothing(
    bus: KafkaBus, name: Callable[[str], str]
) -> None:
    topic, group = name("moved"), name("workers")
    await bus.ensure_topic(topic, 4)
    await bus.produce(topic, [(f"user-{i}", f"r{i}".encode()) for i in range(40)])
    a, b = bus.consumer(topic, group), bus.consumer(topic, group)
    try:
        polled_by_a = await drain(a)  # alone in the group: every partition
        assert len(polled_by_a) == 40
        seen_by_b = await drain(b)  # b's join takes partitions from a, uncommitted

        with pytest.raises(Unavailable, match="delivered again"):
            await a.commit(polled_by_a)
        moved = {r.partition for r in seen_by_b}
        assert moved
        assert ids(seen_by_b) == {
            (r.partition, r.offset) for r in polled_by_a if r.partition in moved
        }

        await b.commit(seen_by_b)
        again = await drain(a)  # whatever of a's own partitions did not get committed
        assert not {r.partition for r in again} & moved
        await a.commit(again)
        assert await bus.lag(topic, group) == 0
    finally:
        await a.close()
        await b.close()


async def test_unreachable_broker_is_unavailable_at_once() -> None:
    bus = KafkaBus("127.0.0.1:1")  # nothing listens on port 1
    consumer = bus.consumer("tidings.test.deliveries", "workers")
    try:
        with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1.*retry") as caught:
            await bus.start()
        assert caught.value.retryable
        with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
            await bus.produce("tidings.test.deliveries", [("user-1", b"hello")])
        with pytest.raises(Unavailable):
            await bus.ensure_topic("tidings.test.deliveries", 4)
        with pytest.raises(Unavailable):
            await consumer.poll(max_records=10, timeout=0.1)
        with pytest.raises(Unavailable):
            await bus.ping()
    finally:
        await consumer.close()
        await bus.close()


async def test_silent_broker_is_unavailable_after_the_timeout() -> None:
    """A broker that accepts connections but never answers must not hang a request."""

    connections: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read()  # until the client gives up and hangs up

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = KafkaBus(f"127.0.0.1:{port}", timeout=1.0)
    try:
        with pytest.raises(Unavailable, match=f"127.0.0.1:{port}"):
            await bus.produce("tidings.test.deliveries", [("user-1", b"hello")])
        with pytest.raises(Unavailable):
            await bus.ping()
    finally:
        await bus.close()
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()


async def test_ensure_topic_grows_an_existing_topic_and_never_shrinks(
    bus: KafkaBus, admin: AIOKafkaAdminClient, name: Callable[[str], str]
) -> None:
    topic = name("grown")
    await admin.create_topics([NewTopic(topic, 2, 1)])  # made earlier, by someone else
    await bus.produce(topic, [("user-0", b"before")])  # the producer now knows 2 partitions

    await bus.ensure_topic(topic, 5)
    await bus.ensure_topic(topic, 3)
    await bus.ensure_topic(topic, 5)

    [described] = await admin.describe_topics([topic])
    assert len(described["partitions"]) == 5
    # The producer hashes over the grown topic at once.
    await bus.produce(topic, [(f"user-{i}", b"after") for i in range(40)])
    consumer = bus.consumer(topic, name("g"))
    try:
        records = await drain(consumer)
    finally:
        await consumer.close()
    assert len(records) == 41
    assert {r.partition for r in records if r.value == b"after"} == {0, 1, 2, 3, 4}


async def test_concurrent_ensure_topic_from_several_processes(
    kafka_bootstrap: str, admin: AIOKafkaAdminClient, name: Callable[[str], str]
) -> None:
    topic = name("raced")
    settings = {"retention.ms": "3600000"}
    buses = [KafkaBus(kafka_bootstrap, topic_configs=settings) for _ in range(4)]
    try:
        for bus in buses:
            await bus.start()
        await asyncio.gather(
            *(b.ensure_topic(topic, n) for b, n in zip(buses, (2, 4, 3, 4), strict=True))
        )
        for bus in buses:
            await bus.produce(topic, [("user-1", b"hello")])
    finally:
        for bus in buses:
            await bus.close()

    [described] = await admin.describe_topics([topic])
    assert len(described["partitions"]) == 4
    [response] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": None})]
    )
    [(_error, _message, _type, _name, entries)] = response.resources
    assert ("retention.ms", "3600000") in [(e[0], e[1]) for e in entries]


async def test_lag_is_produced_minus_committed(bus: KafkaBus, name: Callable[[str], str]) -> None:
    topic, group = name("lagging"), name("g")
    await bus.ensure_topic(topic, 3)
    await bus.produce(topic, [(f"user-{i}", str(i).encode()) for i in range(30)])
    assert await bus.lag(topic, group) == 30  # a group that never committed

    consumer = bus.consumer(topic, group)
    try:
        records = await drain(consumer)
        assert len(records) == 30
        assert await bus.lag(topic, group) == 30  # polled is not committed

        per_partition: dict[int, list[Record]] = defaultdict(list)
        for record in records:
            per_partition[record.partition].append(record)
        first_halves = [r for rs in per_partition.values() for r in rs[: len(rs) // 2]]
        await consumer.commit(first_halves)
        assert await bus.lag(topic, group) == 30 - len(first_halves)

        await consumer.commit(records)
        assert await bus.lag(topic, group) == 0
        await bus.produce(topic, [("user-1", b"late"), ("user-2", b"later")])
        assert await bus.lag(topic, group) == 2
    finally:
        await consumer.close()
