"""The operator's Kafka shell on the real broker of ``scripts/deps``: topics created,
adopted, grown, never shrunk, configured and deleted; consumer-group lag; a broker that
cannot be reached. Topic and group names are the test's own."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.admin.records_to_delete import RecordsToDelete

from tidings_operator.external import KAFKA_REJECTED, KAFKA_UNAVAILABLE, ExternalUnavailable
from tidings_operator.kafka_admin import (
    GroupBacklog,
    KafkaAdmin,
    apply_topic_decision,
    delete_topics,
    group_backlog,
    group_lag,
    kafka_admin,
    observe_topics,
)
from tidings_operator.resources.topics import (
    PARTITIONS_CANNOT_SHRINK,
    REPLICATION_FACTOR_CHANGE,
    ObservedTopic,
    TopicSpec,
    decide_topic,
)

CLIENT_ID = "tidings-operator-test"


def free_port() -> int:
    """A loopback port nobody listens on (bound a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def name() -> Callable[[str], str]:
    """Names of this test's own (one broker serves the whole session)."""
    suffix = uuid.uuid4().hex[:12]
    return lambda base: f"optest.{base}.{suffix}"


@pytest.fixture
async def admin(kafka_bootstrap: str, name: Callable[[str], str]) -> AsyncIterator[KafkaAdmin]:
    """The shell's admin client; deletes the test's topics afterwards."""
    async with kafka_admin(kafka_bootstrap, CLIENT_ID) as client:
        yield client
        suffix = name("").rsplit(".", 1)[1]
        listed = await client.client.list_topics()
        await delete_topics(client, [t for t in listed if t.endswith(suffix)])


async def observe(admin: KafkaAdmin, topic: str) -> ObservedTopic | None:
    return (await observe_topics(admin, [topic]))[topic]


async def converge(admin: KafkaAdmin, desired: TopicSpec) -> ObservedTopic | None:
    """One reconcile step: observe, decide, apply; returns what is there afterwards."""
    await apply_topic_decision(admin, decide_topic(desired, await observe(admin, desired.name)))
    return await observe(admin, desired.name)


async def created_elsewhere(
    admin: KafkaAdmin, topic: str, partitions: int, configs: Mapping[str, str]
) -> ObservedTopic:
    """A topic created by someone else (another tool, by hand), once it is visible."""
    response = await admin.client.create_topics(
        [NewTopic(topic, partitions, 1, topic_configs=dict(configs))]
    )
    assert [code for _, code, *_ in response.topic_errors] == [0]
    while True:
        if (found := await observe(admin, topic)) is not None:
            return found
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- topics


async def test_a_missing_topic_is_created_as_specified(
    admin: KafkaAdmin, name: Callable[[str], str]
) -> None:
    topic = name("deliveries")
    desired = TopicSpec(topic, 3, 1, {"retention.ms": "3600000"})
    assert await observe_topics(admin, [topic]) == {topic: None}
    # Observing did not create it (the broker auto-creates topics a metadata request names).
    assert topic not in await admin.client.list_topics()
    decision = decide_topic(desired, None)
    assert decision.create == desired

    assert await converge(admin, desired) == ObservedTopic(3, 1, {"retention.ms": "3600000"})
    again = decide_topic(desired, await observe(admin, topic))
    assert not again.changes
    assert again.ready


async def test_a_topic_created_by_someone_else_is_adopted_as_it_is(
    admin: KafkaAdmin, name: Callable[[str], str]
) -> None:
    topic = name("receipts")
    theirs = await created_elsewhere(admin, topic, 2, {"cleanup.policy": "compact"})
    assert theirs == ObservedTopic(2, 1, {"cleanup.policy": "compact"})

    decision = decide_topic(TopicSpec(topic, 2, 1), theirs)
    assert not decision.changes
    assert decision.ready
    # Configs the spec does not name are left alone.
    assert await converge(admin, TopicSpec(topic, 2, 1)) == theirs


async def test_partitions_grow(admin: KafkaAdmin, name: Callable[[str], str]) -> None:
    topic = name("push")
    await converge(admin, TopicSpec(topic, 2, 1))
    decision = decide_topic(TopicSpec(topic, 5, 1), await observe(admin, topic))
    assert decision.grow_to == 5
    await apply_topic_decision(admin, decision)
    assert await observe(admin, topic) == ObservedTopic(5, 1)


async def test_a_shrink_and_a_new_replication_factor_are_refused_and_nothing_changes(
    admin: KafkaAdmin, name: Callable[[str], str]
) -> None:
    topic = name("analytics")
    before = await converge(admin, TopicSpec(topic, 4, 1))
    assert before == ObservedTopic(4, 1)

    shrink = decide_topic(TopicSpec(topic, 2, 3), before)
    assert [r.reason for r in shrink.refusals] == [
        PARTITIONS_CANNOT_SHRINK,
        REPLICATION_FACTOR_CHANGE,
    ]
    assert not shrink.changes
    await apply_topic_decision(admin, shrink)
    assert await observe(admin, topic) == before


async def test_configs_are_set_and_others_kept(
    admin: KafkaAdmin, name: Callable[[str], str]
) -> None:
    topic = name("configs")
    await created_elsewhere(admin, topic, 1, {"retention.ms": "7200000"})

    desired = TopicSpec(topic, 1, 1, {"max.message.bytes": "2000000"})
    decision = decide_topic(desired, await observe(admin, topic))
    assert decision.set_configs == {"max.message.bytes": "2000000"}
    await apply_topic_decision(admin, decision)
    # Kafka's AlterConfigs replaces every topic config: the shell wrote the others back.
    assert await observe(admin, topic) == ObservedTopic(
        1, 1, {"max.message.bytes": "2000000", "retention.ms": "7200000"}
    )

    changed = TopicSpec(topic, 1, 1, {"max.message.bytes": "3000000"})
    found = await converge(admin, changed)
    assert found is not None
    assert found.configs == {"max.message.bytes": "3000000", "retention.ms": "7200000"}


async def test_an_invalid_config_value_is_rejected_with_the_reason(
    admin: KafkaAdmin, name: Callable[[str], str]
) -> None:
    topic = name("bad-config")
    await converge(admin, TopicSpec(topic, 1, 1, {"retention.ms": "3600000"}))
    bad = decide_topic(
        TopicSpec(topic, 1, 1, {"retention.ms": "soon"}), await observe(admin, topic)
    )
    with pytest.raises(ExternalUnavailable) as caught:
        await apply_topic_decision(admin, bad)
    assert caught.value.reason == KAFKA_REJECTED
    assert topic in str(caught.value)
    assert "spec.kafka.topicConfig" in str(caught.value)
    found = await observe(admin, topic)
    assert found is not None
    assert found.configs == {"retention.ms": "3600000"}


async def test_a_replication_factor_above_the_brokers_is_rejected_with_the_reason(
    admin: KafkaAdmin, name: Callable[[str], str]
) -> None:
    topic = name("three-replicas")
    with pytest.raises(ExternalUnavailable) as caught:
        await apply_topic_decision(admin, decide_topic(TopicSpec(topic, 1, 3), None))
    assert caught.value.reason == KAFKA_REJECTED
    assert "replication factor 3" in str(caught.value)
    assert "spec.kafka.replicationFactor" in str(caught.value)
    assert await observe(admin, topic) is None


async def test_deleting_topics_skips_missing_ones(
    admin: KafkaAdmin, name: Callable[[str], str]
) -> None:
    first, second, missing = name("one"), name("two"), name("never")
    for topic in (first, second):
        await converge(admin, TopicSpec(topic, 1, 1))

    assert await delete_topics(admin, [second, first, missing]) == sorted([first, second])
    assert await observe_topics(admin, [first, second, missing]) == {
        first: None,
        second: None,
        missing: None,
    }
    assert await delete_topics(admin, [first, missing]) == []


# --------------------------------------------------------------------------- lag


async def produce(bootstrap: str, topic: str, counts: Mapping[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, count in counts.items():
            for i in range(count):
                await producer.send_and_wait(topic, f"r{i}".encode(), partition=partition)
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Commit ``offsets`` for ``group`` as a consumer that read up to them would."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    consumer.assign([TopicPartition(topic, p) for p in offsets])
    await consumer.start()
    try:
        await consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
    finally:
        await consumer.stop()


async def test_group_lag_counts_uncommitted_records_per_partition(
    admin: KafkaAdmin, kafka_bootstrap: str, name: Callable[[str], str]
) -> None:
    topic, group = name("lag"), name("group")
    await converge(admin, TopicSpec(topic, 3, 1))
    assert await group_lag(kafka_bootstrap, group, topic) == {0: 0, 1: 0, 2: 0}

    await produce(kafka_bootstrap, topic, {0: 5, 1: 3})
    # No commit yet: everything in the log counts.
    assert await group_lag(kafka_bootstrap, group, topic) == {0: 5, 1: 3, 2: 0}

    await commit(kafka_bootstrap, group, topic, {0: 2, 1: 3})
    assert await group_lag(kafka_bootstrap, group, topic) == {0: 3, 1: 0, 2: 0}
    # Another group's commits are its own.
    assert await group_lag(kafka_bootstrap, name("other"), topic) == {0: 5, 1: 3, 2: 0}


async def test_the_backlog_names_when_its_oldest_waiting_record_was_produced(
    admin: KafkaAdmin, kafka_bootstrap: str, name: Callable[[str], str]
) -> None:
    topic, group = name("age"), name("group")
    await converge(admin, TopicSpec(topic, 2, 1))
    assert await group_backlog(kafka_bootstrap, group, topic) == GroupBacklog({0: 0, 1: 0})
    base = int(time.time() * 1000) - 3_600_000  # an hour ago: the broker takes that
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(3):  # partition 0: base, +1 s, +2 s; partition 1: +10 s, +11 s, +12 s
            await producer.send_and_wait(topic, b"r", partition=0, timestamp_ms=base + i * 1000)
            await producer.send_and_wait(
                topic, b"r", partition=1, timestamp_ms=base + 10_000 + i * 1000
            )
    finally:
        await producer.stop()
    assert (await group_backlog(kafka_bootstrap, group, topic)).oldest_ms == base
    await commit(kafka_bootstrap, group, topic, {0: 2})  # two of partition 0 consumed
    assert await group_backlog(kafka_bootstrap, group, topic) == GroupBacklog(
        {0: 1, 1: 3}, base + 2000
    )
    await commit(kafka_bootstrap, group, topic, {0: 3, 1: 1})
    assert await group_backlog(kafka_bootstrap, group, topic) == GroupBacklog(
        {0: 0, 1: 2}, base + 11_000
    )
    await commit(kafka_bootstrap, group, topic, {1: 3})
    assert await group_backlog(kafka_bootstrap, group, topic) == GroupBacklog({0: 0, 1: 0})


async def test_a_partition_without_a_commit_counts_from_its_log_start(
    admin: KafkaAdmin, kafka_bootstrap: str, name: Callable[[str], str]
) -> None:
    topic, group = name("retention"), name("group")
    await converge(admin, TopicSpec(topic, 2, 1))
    await produce(kafka_bootstrap, topic, {0: 6, 1: 6})
    # Records 0..3 of partition 0 are gone (as retention would remove them).
    await admin.client.delete_records({TopicPartition(topic, 0): RecordsToDelete(4)})
    await commit(kafka_bootstrap, group, topic, {1: 1})
    assert await group_lag(kafka_bootstrap, group, topic) == {0: 2, 1: 5}


async def test_the_lag_on_a_missing_topic_is_empty(
    admin: KafkaAdmin, kafka_bootstrap: str, name: Callable[[str], str]
) -> None:
    topic = name("absent")
    assert await group_lag(kafka_bootstrap, name("group"), topic) == {}
    assert await observe(admin, topic) is None  # and asking did not create it


# --------------------------------------------------------------------------- unreachable


@pytest.mark.timeout(60)
async def test_an_unreachable_broker_raises_one_clear_error() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(ExternalUnavailable) as caught:
        async with kafka_admin(nowhere, CLIENT_ID, timeout=3):
            pytest.fail("connected to a port nobody listens on")
    assert caught.value.reason == KAFKA_UNAVAILABLE
    message = str(caught.value)
    assert nowhere in message
    assert "spec.kafka.bootstrapServers" in message

    with pytest.raises(ExternalUnavailable) as lag:
        await group_lag(nowhere, "group", "topic", timeout=3)
    assert lag.value.reason == KAFKA_UNAVAILABLE
