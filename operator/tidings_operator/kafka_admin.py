"""The operator's thin shell over Kafka's admin API (aiokafka 0.14).

``resources.topics`` decides; this module reads what is there and carries decisions
out, nothing more::

    async with kafka_admin(spec.kafka.bootstrap_servers, "tidings-operator") as admin:
        observed = await observe_topics(admin, [t.name for t in desired])
        for topic in desired:
            await apply_topic_decision(admin, decide_topic(topic, observed[topic.name]))

- Topics are looked up in the metadata of *every* topic: a metadata request naming a
  missing topic makes a broker with ``auto.create.topics.enable`` create it.
- A topic's configs are the ones set on the topic itself (source
  ``DYNAMIC_TOPIC_CONFIG``); broker defaults and Kafka's defaults are not reported.
- aiokafka 0.14 has no IncrementalAlterConfigs, and the plain AlterConfigs it has
  replaces *every* topic-level config. Setting configs therefore reads the topic's own
  configs first and writes them back merged with the new values, so configs set by
  someone else stay (a change made between the read and the write is lost: a race only
  with another writer of the same topic at the same moment).
- Creating, growing and deleting wait (bounded) until the metadata shows the result,
  so what the next observation sees agrees with what was just done.
- Nothing here deletes a topic except ``delete_topics``, and nothing shrinks one.

Every call is bounded by the ``timeout`` given to ``kafka_admin``; failures come out as
``ExternalUnavailable`` (``KafkaUnavailable`` when Kafka did not answer, ``KafkaRejected``
when it refused) whose message names the brokers and what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import (  # type: ignore[import-untyped]
    AIOKafkaAdminClient,
    NewPartitions,
    NewTopic,
)
from aiokafka.admin.config_resource import (  # type: ignore[import-untyped]
    ConfigResource,
    ConfigResourceType,
)
from aiokafka.errors import (  # type: ignore[import-untyped]
    GroupCoordinatorNotAvailableError,
    InvalidPartitionsError,
    KafkaError,
    NotCoordinatorForGroupError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from tidings.core.offsets import consumer_lag
from tidings_operator.external import KAFKA_REJECTED, KAFKA_UNAVAILABLE, ExternalUnavailable
from tidings_operator.resources.topics import ObservedTopic, TopicDecision, TopicSpec

DEFAULT_TIMEOUT_S = 10.0
_SETTLE_POLL_S = 0.1
_DYNAMIC_TOPIC_CONFIG = 1
"""``config_source`` of a config set on the topic itself (DescribeConfigs v1+)."""
_CHECK = (
    "check that the brokers are up and reachable from the operator (spec.kafka.bootstrapServers)"
)


@dataclass(frozen=True)
class KafkaAdmin:
    """A started ``AIOKafkaAdminClient`` with the address and time bound of its calls."""

    client: Any
    bootstrap_servers: str
    timeout: float = DEFAULT_TIMEOUT_S

    @contextlib.asynccontextmanager
    async def guard(self, what: str) -> AsyncIterator[None]:
        """Bound ``what`` in time; driver failures become ``ExternalUnavailable``."""
        async with _guard(self.bootstrap_servers, what, self.timeout):
            yield

    def rejected(self, what: str, code: int, message: object, check: str) -> ExternalUnavailable:
        error = for_code(code).__name__
        return ExternalUnavailable(
            KAFKA_REJECTED,
            f"Kafka at {self.bootstrap_servers} refused to {what} ({error}: {message or ''}); "
            f"{check}",
        )


@contextlib.asynccontextmanager
async def _guard(bootstrap_servers: str, what: str, timeout: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError as exc:
        raise ExternalUnavailable(
            KAFKA_UNAVAILABLE,
            f"Kafka at {bootstrap_servers}: {what} took longer than {timeout:g}s; {_CHECK}",
        ) from exc
    except (KafkaError, OSError) as exc:
        text = str(exc)  # aiokafka's errors start with their class name already
        cause = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
        raise ExternalUnavailable(
            KAFKA_UNAVAILABLE, f"Kafka at {bootstrap_servers}: {what} failed ({cause}); {_CHECK}"
        ) from exc


@contextlib.asynccontextmanager
async def kafka_admin(
    bootstrap_servers: str, client_id: str, *, timeout: float = DEFAULT_TIMEOUT_S
) -> AsyncIterator[KafkaAdmin]:
    """A connected admin client for the block; raises ``ExternalUnavailable`` when no
    broker answers within ``timeout`` seconds."""
    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        request_timeout_ms=round(timeout * 1000),
    )
    try:
        async with _guard(bootstrap_servers, "connecting", timeout):
            await client.start()
        yield KafkaAdmin(client, bootstrap_servers, timeout)
    finally:
        # A broker that is gone must not keep the caller from going on.
        with contextlib.suppress(ExternalUnavailable):
            async with _guard(bootstrap_servers, "closing the admin client", timeout):
                await client.close()


# --------------------------------------------------------------------------- reading


Metadata = dict[str, list[dict[str, Any]]]
"""Topic name -> its partitions as the brokers describe them."""


async def _metadata(admin: KafkaAdmin) -> Metadata:
    """Partitions of every topic the brokers list (never names one: no auto-creation)."""
    async with admin.guard("listing topics"):
        described = await admin.client.describe_topics()
    return {
        entry["topic"]: entry["partitions"]
        for entry in described
        if entry["error_code"] != UnknownTopicOrPartitionError.errno and entry["partitions"]
    }


async def _topic_configs(
    admin: KafkaAdmin, names: Iterable[str]
) -> dict[str, dict[str, str] | None]:
    """The configs set on each topic itself; None for a topic the broker does not know
    (yet: configs become describable a moment after the topic is listed)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    if not resources:
        return {}
    async with admin.guard("describing topic configs"):
        responses = await admin.client.describe_configs(resources)
    found: dict[str, dict[str, str] | None] = {}
    for response in responses:
        version = response.API_VERSION
        for code, message, _type, name, entries in response.resources:
            if code == UnknownTopicOrPartitionError.errno:
                found[name] = None
                continue
            if code:
                raise admin.rejected(
                    f"describe the configs of topic {name}",
                    code,
                    message,
                    "check that the operator may describe topic configs",
                )
            found[name] = {
                key: value
                for key, value, _read_only, source, *_ in entries
                if value is not None
                and (source == _DYNAMIC_TOPIC_CONFIG if version >= 1 else not source)
            }
    return found


def _in_flux(admin: KafkaAdmin, name: str) -> ExternalUnavailable:
    return ExternalUnavailable(
        KAFKA_UNAVAILABLE,
        f"Kafka at {admin.bootstrap_servers} lists topic {name} but does not know its "
        "configs: it is being created or deleted right now; retry",
    )


def _observed(partitions: list[dict[str, Any]], configs: Mapping[str, str]) -> ObservedTopic:
    replicas = max(len(p["replicas"]) for p in partitions)
    return ObservedTopic(len(partitions), replicas, dict(sorted(configs.items())))


async def topic_names(admin: KafkaAdmin) -> set[str]:
    """The topics the brokers list now (one metadata request)."""
    return set(await _metadata(admin))


async def observe_topics(
    admin: KafkaAdmin, names: Iterable[str]
) -> dict[str, ObservedTopic | None]:
    """Each named topic as Kafka describes it, ``None`` when it does not exist."""
    wanted = list(dict.fromkeys(names))
    metadata = await _metadata(admin)
    configs = await _topic_configs(admin, [name for name in wanted if name in metadata])
    observed: dict[str, ObservedTopic | None] = {}
    for name in wanted:
        if name not in metadata:
            observed[name] = None
        elif (own := configs.get(name)) is None:
            raise _in_flux(admin, name)
        else:
            observed[name] = _observed(metadata[name], own)
    return observed


async def _settle(admin: KafkaAdmin, what: str, done: Callable[[], Awaitable[bool]]) -> None:
    """Poll until ``done()`` (a freshly changed topic reaches the brokers' metadata a
    moment after the controller has it)."""
    async with admin.guard(f"waiting until {what}"):
        while True:
            if await done():
                return
            await asyncio.sleep(_SETTLE_POLL_S)


# --------------------------------------------------------------------------- changing


async def apply_topic_decision(admin: KafkaAdmin, decision: TopicDecision) -> None:
    """Carry out the safe parts of ``decision``: create, grow, set configs. Refusals are
    reported by the caller, never acted on; nothing is deleted or shrunk."""
    name = decision.topic
    if decision.create is not None:
        await _create(admin, decision.create)
    if decision.grow_to is not None:
        await _grow(admin, name, decision.grow_to)
    if decision.set_configs:
        await _set_configs(admin, name, decision.set_configs)


async def _create(admin: KafkaAdmin, spec: TopicSpec) -> None:
    new = NewTopic(
        spec.name, spec.partitions, spec.replication_factor, topic_configs=dict(spec.configs)
    )
    async with admin.guard(f"creating topic {spec.name}"):
        response = await admin.client.create_topics([new])
    for _topic, code, *message in response.topic_errors:
        if code == TopicAlreadyExistsError.errno:
            return  # created meanwhile by someone else: adopted by the next observation
        if code:
            raise admin.rejected(
                f"create topic {spec.name} with {spec.partitions} partitions and replication "
                f"factor {spec.replication_factor}",
                code,
                message[0] if message else "",
                "check that spec.kafka.replicationFactor does not exceed the live brokers "
                "and that spec.kafka.topicConfig names valid topic configs",
            )

    async def ready() -> bool:
        if spec.name not in await _metadata(admin):
            return False
        return (await _topic_configs(admin, [spec.name])).get(spec.name) is not None

    await _settle(admin, f"topic {spec.name} is listed with its configs", ready)


async def _grow(admin: KafkaAdmin, name: str, partitions: int) -> None:
    try:
        async with admin.guard(f"growing topic {name} to {partitions} partitions"):
            # Grown by someone else meanwhile (or a shrink, which Kafka refuses): settled below.
            with contextlib.suppress(InvalidPartitionsError):
                await admin.client.create_partitions({name: NewPartitions(partitions)})
    except ExternalUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, KafkaError) and not getattr(cause, "retriable", False):
            raise ExternalUnavailable(
                KAFKA_REJECTED,
                f"Kafka at {admin.bootstrap_servers} refused to grow topic {name} to "
                f"{partitions} partitions ({type(cause).__name__}: {cause}); check that the "
                "topic exists and the operator may alter it",
            ) from cause
        raise

    async def grown() -> bool:
        return len((await _metadata(admin)).get(name, [])) >= partitions

    await _settle(admin, f"topic {name} has {partitions} partitions", grown)


async def _set_configs(admin: KafkaAdmin, name: str, changes: Mapping[str, str]) -> None:
    current = (await _topic_configs(admin, [name])).get(name)
    if current is None:
        raise _in_flux(admin, name)
    merged = {**current, **changes}
    resource = ConfigResource(ConfigResourceType.TOPIC, name, merged)
    async with admin.guard(f"setting configs of topic {name}"):
        responses = await admin.client.alter_configs([resource])
    for response in responses:
        for code, message, *_ in response.resources:
            if code:
                raise admin.rejected(
                    f"set {', '.join(f'{k}={v}' for k, v in sorted(changes.items()))} on "
                    f"topic {name}",
                    code,
                    message,
                    "check the names and values in spec.kafka.topicConfig",
                )


async def delete_topics(admin: KafkaAdmin, names: Iterable[str]) -> list[str]:
    """Delete the named topics that exist; returns those deleted (sorted)."""
    wanted = sorted(set(names))
    metadata = await _metadata(admin)
    present = [name for name in wanted if name in metadata]
    if not present:
        return []
    async with admin.guard(f"deleting topics {', '.join(present)}"):
        response = await admin.client.delete_topics(present)
    deleted = []
    for topic, code, *_ in response.topic_error_codes:
        if code == UnknownTopicOrPartitionError.errno:
            continue  # deleted meanwhile by someone else
        if code:
            raise admin.rejected(
                f"delete topic {topic}",
                code,
                "",
                "check that delete.topic.enable is true and the operator may delete topics",
            )
        deleted.append(topic)

    async def gone() -> bool:
        return not set(deleted) & set(await _metadata(admin))

    await _settle(admin, "the deleted topics are gone", gone)
    return sorted(deleted)


# --------------------------------------------------------------------------- lag


async def _group_offsets(admin: KafkaAdmin, group: str, parts: list[Any]) -> Any:
    """The group's committed offsets; retried while Kafka has no coordinator for the
    group yet (a fresh broker creates ``__consumer_offsets`` on first use). The caller's
    guard bounds the retries in time."""
    while True:
        try:
            return await admin.client.list_consumer_group_offsets(group, partitions=parts)
        except (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError):
            await asyncio.sleep(_SETTLE_POLL_S)


@dataclass(frozen=True)
class GroupBacklog:
    """What a consumer group has not committed on a topic: records per partition, and
    when the oldest of them was produced."""

    lag: dict[int, int]
    oldest_ms: int | None = None
    """Kafka timestamp (ms since the epoch, the producer's ``CreateTime``: when the
    router accepted the send) of the oldest record waiting; None when none waits or it
    could not be read in time."""


OLDEST_READ_S = 2.0
"""How long reading the first waiting record of each lagging partition may take."""


async def group_lag(
    bootstrap_servers: str,
    group: str,
    topic: str,
    *,
    client_id: str = "tidings-operator",
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[int, int]:
    """Per partition of ``topic``: records the consumer group has not committed yet
    (``tidings.core.offsets.consumer_lag``). ``{}`` when the topic does not exist."""
    backlog = await group_backlog(
        bootstrap_servers, group, topic, client_id=client_id, timeout=timeout, oldest=False
    )
    return backlog.lag


async def group_backlog(
    bootstrap_servers: str,
    group: str,
    topic: str,
    *,
    client_id: str = "tidings-operator",
    timeout: float = DEFAULT_TIMEOUT_S,
    oldest: bool = True,
) -> GroupBacklog:
    """``group_lag``, and (``oldest``) the timestamp of the oldest record waiting: the
    first uncommitted record of each lagging partition is read (one fetch each)."""
    async with kafka_admin(bootstrap_servers, client_id, timeout=timeout) as admin:
        metadata = await _metadata(admin)
        if topic not in metadata:
            return GroupBacklog({})
        parts = [TopicPartition(topic, p["partition"]) for p in metadata[topic]]
        async with admin.guard(f"reading the offsets of group {group} on {topic}"):
            committed = await _group_offsets(admin, group, parts)
        # Log offsets come from a consumer outside any group (the admin API of aiokafka
        # 0.14 has no ListOffsets); it only ever names a topic that exists.
        lookup = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=round(timeout * 1000),
        )
        oldest_ms = None
        try:
            async with admin.guard(f"reading the log offsets of {topic}"):
                await lookup.start()
                beginning = {
                    tp.partition: o for tp, o in (await lookup.beginning_offsets(parts)).items()
                }
                end = {tp.partition: o for tp, o in (await lookup.end_offsets(parts)).items()}
            positions = {
                tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic
            }
            lag = consumer_lag(beginning, end, positions)
            if oldest and any(lag.values()):
                waiting = {
                    p: max(beginning.get(p, 0), positions.get(p, -1)) for p, n in lag.items() if n
                }
                async with admin.guard(f"reading the oldest waiting record of {topic}"):
                    oldest_ms = await _first_timestamps(lookup, topic, waiting)
        finally:
            with contextlib.suppress(ExternalUnavailable):
                async with admin.guard("closing the offset reader"):
                    await lookup.stop()
    return GroupBacklog(lag, oldest_ms)


async def _first_timestamps(lookup: Any, topic: str, start: Mapping[int, int]) -> int | None:
    """The oldest timestamp among the records at ``start`` (partition -> offset), or
    None when none came within ``OLDEST_READ_S`` (retention removed it meanwhile, or
    the broker is slow: the age is then unknown, never made up)."""
    parts = {p: TopicPartition(topic, p) for p in start}
    lookup.assign(list(parts.values()))
    for partition, tp in parts.items():
        lookup.seek(tp, start[partition])
    found: dict[int, int] = {}
    deadline = asyncio.get_running_loop().time() + OLDEST_READ_S
    while len(found) < len(parts):
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        wanted = [tp for p, tp in parts.items() if p not in found]
        batch = await lookup.getmany(*wanted, timeout_ms=round(left * 1000), max_records=64)
        for tp, records in batch.items():
            if records and tp.partition not in found:
                found[tp.partition] = int(records[0].timestamp)
    return min(found.values()) if found else None


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GroupBacklog",
    "KafkaAdmin",
    "apply_topic_decision",
    "delete_topics",
    "group_backlog",
    "group_lag",
    "kafka_admin",
    "observe_topics",
]
