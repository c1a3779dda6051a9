"""The event bus on Apache Kafka (aiokafka): what the distributed platform runs.

Mapping of the port:

- ``produce`` sends every record through one idempotent producer (``acks=all``) and
  returns once all of them are acknowledged. Keys are hashed by Kafka's default
  (murmur2) partitioner, so a key keeps its partition and its produce order.
- ``consumer`` is one member of a Kafka consumer group. The port creates it
  synchronously, so it joins the group on its first ``poll``. Offsets are committed
  only by ``commit`` (never automatically), as ``max offset + 1`` per partition.
- ``poll`` hands out records of the partitions assigned to the member, oldest first per
  partition. It returns ``[]`` only when the member has nothing left to read: when the
  timeout passes with records still on the broker that the fetcher has not brought yet,
  it waits for them a little longer (up to ``_CATCH_UP_S``) instead of reporting an
  empty log.

Rebalances: aiokafka rejoins in the background; while a rebalance runs, ``poll``
waits for the new assignment. Records a member polled but did not commit before it
lost their partition are delivered again to the new owner (at-least-once). A commit
that covers such a partition raises ``Unavailable`` after committing the partitions the
member still owns: the caller must treat those records as not committed.

Every driver error, connection failure and timeout becomes ``Unavailable`` (503,
retryable) with the broker address in the message. No request waits on the brokers
longer than the ``timeout`` given to ``KafkaBus``; joining a group, or a poll that
meets a rebalance, may take the rebalance timeout on top.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerStoppedError,
    TopicPartition,
)
from aiokafka.admin import (  # type: ignore[import-untyped]
    AIOKafkaAdminClient,
    NewPartitions,
    NewTopic,
)
from aiokafka.errors import (  # type: ignore[import-untyped]
    CommitFailedError,
    IllegalStateError,
    InvalidPartitionsError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    for_code,
)

from tidings.core.offsets import consumer_lag
from tidings.errors import NotFound, PayloadTooLarge, Unavailable
from tidings.ports import Record

_DRIVER_ERRORS = (KafkaError, ConsumerStoppedError, OSError)
_CATCH_UP_S = 5.0  # how long poll may overrun its timeout for records known to be there
_CATCH_UP_SLICE_S = 0.05
_METADATA_RETRY_S = 0.1
_PING_S = 2.0


class KafkaBus:
    """``tidings.ports.EventBus`` on a Kafka cluster.

    The group timeouts suit production and tests alike: heartbeats every second make a
    member notice a rebalance within about a second, and a member that stops
    heartbeating (a crashed process) is replaced after ``session_timeout_ms``.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "tidings",
        replication_factor: int = 1,
        topic_configs: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        rebalance_timeout_ms: int = 10_000,
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.replication_factor = replication_factor
        self.topic_configs = dict(topic_configs or {})
        self.timeout = timeout
        self._group_settings: dict[str, Any] = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "rebalance_timeout_ms": rebalance_timeout_ms,
            "max_poll_interval_ms": max_poll_interval_ms,
            # A JoinGroup request legitimately waits up to the rebalance timeout for the
            # other members, so requests may not time out before it does.
            "request_timeout_ms": max(round(timeout * 1000), rebalance_timeout_ms + 5_000),
        }
        self.join_timeout = rebalance_timeout_ms / 1000 + timeout
        self._producer: Any = None
        self._admin: Any = None
        self._offsets: Any = None  # a group-less consumer that looks up log offsets
        self._connecting = asyncio.Lock()
        self._known_topics: set[str] = set()
        self._consumers: set[KafkaConsumer] = set()
        self._closed = False

    # connections ------------------------------------------------------------------------
    async def start(self) -> None:
        await self._clients()

    async def _clients(self) -> tuple[Any, Any]:
        """The started producer and admin client; connects on first use, so a bus whose
        broker was down at start-up recovers once the broker is back."""
        if self._closed:
            raise Unavailable("the Kafka bus is closed; create a new one")
        async with self._connecting:
            if self._producer is None:
                common = {
                    "bootstrap_servers": self.bootstrap,
                    "client_id": self.client_id,
                    "request_timeout_ms": round(self.timeout * 1000),
                }
                producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **common)
                admin = AIOKafkaAdminClient(**common)
                try:
                    async with self.guard("connecting"):
                        await producer.start()
                        await admin.start()
                except BaseException:
                    await self._quietly(producer.stop())
                    await self._quietly(admin.close())
                    raise
                self._producer, self._admin = producer, admin
        return self._producer, self._admin

    async def _lookup(self) -> Any:
        await self._clients()
        async with self._connecting:
            if self._offsets is None:
                lookup = AIOKafkaConsumer(**self.consumer_settings(None))
                try:
                    async with self.guard("connecting"):
                        await lookup.start()
                except BaseException:
                    await self._quietly(lookup.stop())
                    raise
                self._offsets = lookup
        return self._offsets

    def consumer_settings(self, group: str | None) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "group_id": group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            **self._group_settings,
        }

    @contextlib.asynccontextmanager
    async def guard(self, what: str, seconds: float | None = None) -> AsyncIterator[None]:
        """Bound a driver call in time and turn its failures into Tidings errors."""
        limit = self.timeout if seconds is None else seconds
        try:
            async with asyncio.timeout(limit):
                yield
        except TimeoutError as exc:
            raise Unavailable(
                f"Kafka at {self.bootstrap}: {what} took longer than {limit:g}s; "
                "check that the brokers are up and reachable, then retry"
            ) from exc
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise PayloadTooLarge(f"Kafka refused a record as too large ({what})") from exc
        except _DRIVER_ERRORS as exc:
            raise Unavailable(
                f"Kafka at {self.bootstrap}: {what} failed ({exc}); "
                "check that the brokers are up and reachable, then retry"
            ) from exc

    async def _quietly(self, closing: Awaitable[Any]) -> None:
        """Release a client; a broker that is gone must not keep us from shutting down."""
        with contextlib.suppress(Unavailable):
            async with self.guard("closing a client"):
                await closing

    async def close(self) -> None:
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.close()
        async with self._connecting:
            clients = (self._producer, self._admin, self._offsets)
            self._producer = self._admin = self._offsets = None
        producer, admin, lookup = clients
        if producer is not None:
            await self._quietly(producer.stop())  # sends what is still queued
        if admin is not None:
            await self._quietly(admin.close())
        if lookup is not None:
            await self._quietly(lookup.stop())

    # topics -----------------------------------------------------------------------------
    async def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` or adopt it; grow it to ``partitions``, never shrink it.

        Safe to run from many processes at once: losing a creation or growth race to
        another process is success when the topic ends up at least as large.
        """
        _, admin = await self._clients()
        if await self._partition_count(topic) is None:
            new = NewTopic(
                topic, partitions, self.replication_factor, topic_configs=self.topic_configs
            )
            async with self.guard(f"creating topic {topic}"):
                response = await admin.create_topics([new])
            for _name, code, *message in response.topic_errors:
                if code and code != TopicAlreadyExistsError.errno:  # exists: another process won
                    raise Unavailable(
                        f"Kafka at {self.bootstrap} refused to create topic {topic} "
                        f"({for_code(code).__name__}: {message[0] if message else ''}); "
                        "check the replication factor and topic settings, then retry"
                    )
        if await self._await_partitions(topic, 1) < partitions:
            # Growing remaps keys to partitions (Kafka hashes over the partition count).
            async with self.guard(f"growing topic {topic} to {partitions} partitions"):
                with contextlib.suppress(InvalidPartitionsError):  # someone grew it first
                    await admin.create_partitions({topic: NewPartitions(partitions)})
            await self._await_partitions(topic, partitions)
        self._known_topics.add(topic)

    async def _partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic`` as the cluster reports them, None if it does not exist."""
        _, admin = await self._clients()
        async with self.guard(f"describing topic {topic}"):
            # Ask for every topic: a metadata request naming a missing topic would make a
            # broker with auto.create.topics.enable create it with default settings.
            described = await admin.describe_topics()
        for entry in described:
            if entry["topic"] == topic:
                return len(entry["partitions"])
        return None

    async def _await_partitions(self, topic: str, at_least: int) -> int:
        """Refresh the producer's view of an existing ``topic`` until it shows ``at_least``
        partitions, so the next produce hashes keys over all of them (a new topic or
        partition reaches the brokers' metadata a moment after the controller has it)."""
        producer, _ = await self._clients()
        client = producer.client
        async with self.guard(f"waiting for topic {topic} metadata"):
            await client.add_topic(topic)
            while True:
                await client.force_metadata_update()
                found = client.cluster.partitions_for_topic(topic)
                if found is not None and len(found) >= at_least:
                    return len(found)
                await asyncio.sleep(_METADATA_RETRY_S)

    async def _require_topic(self, topic: str) -> None:
        # The producer and consumers name the topic in metadata requests, which would
        # auto-create a missing one on brokers that allow it: check first, like the
        # embedded bus, and remember the answer.
        if topic in self._known_topics:
            return
        if await self._partition_count(topic) is None:
            raise NotFound(f"topic {topic} does not exist; create it with ensure_topic")
        self._known_topics.add(topic)

    # records ----------------------------------------------------------------------------
    async def produce(self, topic: str, records: Sequence[tuple[str, bytes]]) -> None:
        if not records:
            return
        producer, _ = await self._clients()
        await self._require_topic(topic)
        acks: list[asyncio.Future[Any]] = []
        try:
            async with self.guard(f"producing {len(records)} records to {topic}"):
                # Queue every record before waiting, so the batch shares requests.
                for key, value in records:
                    acks.append(await producer.send(topic, value=value, key=key.encode()))
                results = await asyncio.gather(*acks, return_exceptions=True)
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
        finally:
            for ack in acks:
                ack.cancel()  # only a notification: a queued record is still sent

    def consumer(self, topic: str, group: str) -> KafkaConsumer:
        consumer = KafkaConsumer(self, topic, group)
        self._consumers.add(consumer)
        return consumer

    async def lag(self, topic: str, group: str) -> int:
        """Records of ``topic`` that ``group`` has not committed yet, over all partitions."""
        count = await self._partition_count(topic)
        if count is None:
            raise NotFound(f"topic {topic} does not exist")
        _, admin = await self._clients()
        lookup = await self._lookup()
        parts = [TopicPartition(topic, p) for p in range(count)]
        async with self.guard(f"reading the lag of group {group} on {topic}"):
            committed = await admin.list_consumer_group_offsets(group, partitions=parts)
            starts = await lookup.beginning_offsets(parts)
            ends = await lookup.end_offsets(parts)
        lag = consumer_lag(
            {tp.partition: starts[tp] for tp in parts},
            {tp.partition: ends[tp] for tp in parts},
            {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic},
        )
        return sum(lag.values())

    async def ping(self) -> None:
        async with self.guard("ping", _PING_S):
            _, admin = await self._clients()
            cluster = await admin.describe_cluster()
        if not cluster["brokers"]:
            raise Unavailable(f"Kafka at {self.bootstrap} reports no live broker; retry later")

    def _forget(self, consumer: KafkaConsumer) -> None:
        self._consumers.discard(consumer)


class _Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Knows whether a rebalance is under way (aiokafka runs it in the background)."""

    def __init__(self) -> None:
        self.settled = False

    def on_partitions_revoked(self, revoked: object) -> None:
        self.settled = False

    def on_partitions_assigned(self, assigned: object) -> None:
        self.settled = True


class KafkaConsumer:
    """One member of consumer group ``group`` on ``topic`` (``tidings.ports.Consumer``)."""

    def __init__(self, bus: KafkaBus, topic: str, group: str) -> None:
        self.bus, self.topic, self.group = bus, topic, group
        self._member: Any = None
        self._membership = _Membership()
        self._starting = asyncio.Lock()
        self._closed = False

    async def _joined(self) -> Any:
        async with self._starting:
            if self._closed:
                raise Unavailable(f"this consumer of {self.topic} is closed; create a new one")
            if self._member is None:
                await self.bus._require_topic(self.topic)
                member = AIOKafkaConsumer(**self.bus.consumer_settings(self.group))
                member.subscribe([self.topic], listener=self._membership)
                try:
                    # start() returns once the group has given this member its partitions.
                    what = f"joining group {self.group} on {self.topic}"
                    async with self.bus.guard(what, self.bus.join_timeout):
                        await member.start()
                except BaseException:
                    await self.bus._quietly(member.stop())
                    raise
                self._member = member
            return self._member

    async def poll(self, max_records: int, timeout: float) -> list[Record]:
        member = await self._joined()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        give_up = deadline + _CATCH_UP_S
        while True:
            now = loop.time()
            wait = deadline - now if now < deadline else _CATCH_UP_SLICE_S
            # getmany waits without limit while a rebalance runs: bound it.
            async with self.bus.guard(f"polling {self.topic}", wait + self.bus.join_timeout):
                batches = await member.getmany(
                    timeout_ms=round(wait * 1000), max_records=max_records
                )
                records = [
                    _record(message)
                    for tp in sorted(batches, key=lambda tp: tp.partition)
                    for message in batches[tp]
                ]
                if records:
                    return records
                if loop.time() >= deadline and (
                    loop.time() >= give_up or await self._caught_up(member)
                ):
                    return []

    async def _caught_up(self, member: Any) -> bool:
        """Whether the member has handed out everything its partitions held just now."""
        if not self._membership.settled:
            return False
        assigned = list(member.assignment())
        if not assigned:
            return True
        # Ask on the bus's own connection: on the member's, the request would queue
        # behind the fetcher's long poll (a broker answers a connection in order).
        lookup = await self.bus._lookup()
        try:
            ends = await lookup.end_offsets(assigned)
            for tp in assigned:
                if await member.position(tp) < ends[tp]:
                    return False
        except IllegalStateError:  # a rebalance took the partition meanwhile
            return False
        return True

    async def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        member = self._member
        if member is None:
            raise Unavailable(
                f"this consumer of {self.topic} is closed; its records will be delivered again"
            )
        upto: dict[Any, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            upto[tp] = max(upto.get(tp, 0), record.offset + 1)
        owned = member.assignment()
        mine = {tp: offset for tp, offset in upto.items() if tp in owned}
        if mine:
            async with self.bus.guard(f"committing {self.topic} for group {self.group}"):
                try:
                    await member.commit(mine)
                except (CommitFailedError, IllegalStateError) as exc:
                    raise Unavailable(
                        f"group {self.group} rebalanced before the commit on {self.topic}; "
                        "the records will be delivered again to the partitions' new owners"
                    ) from exc
                await self._skip_committed(member, mine)
        lost = sorted(tp.partition for tp in upto if tp not in owned)
        if lost:
            raise Unavailable(
                f"partitions {lost} of {self.topic} moved to another member of group "
                f"{self.group} before the commit; their records will be delivered again there"
            )

    async def _skip_committed(self, member: Any, committed: Mapping[Any, int]) -> None:
        # A rebalance that left a partition with this member while the caller handled
        # the batch restarted it from the offset committed before: without a seek the
        # records just committed would be handed out again.
        for tp, offset in committed.items():
            try:
                if await member.position(tp) < offset:
                    member.seek(tp, offset)
            except IllegalStateError:  # the partition moved on meanwhile
                pass

    async def close(self) -> None:
        async with self._starting:
            self._closed = True
            member, self._member = self._member, None
        self.bus._forget(self)
        if member is not None:
            # stop() leaves the group, so the partitions move to other members at once.
            await self.bus._quietly(member.stop())


def _record(message: Any) -> Record:
    key = message.key
    value = message.value
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key="" if key is None else key.decode(errors="replace"),
        value=b"" if value is None else value,
    )
