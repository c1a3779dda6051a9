"""Port contract suite, run against the embedded engines and the real ones we have.

Every test talks to the port interfaces only (``EventBus``, ``MessageStore``,
``UserStore``, ``PresenceStore``); the fixtures are parametrised by engine name so the
same tests can run against Kafka, Cassandra and Redis by adding params. ``PresenceStore``
runs against "embedded" and "redis": a real Redis server started once per session by
``scripts/deps up redis`` (the fixture fails, never skips, when it cannot start).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tidings.core.model import (
    PRIMARY_DEVICE,
    Device,
    Group,
    OneTimePreKey,
    PushToken,
    Role,
    SignedPreKey,
    User,
)
from tidings.core.push import Provider
from tidings.core.ratelimit import Bucket, Limit, idle_expiry, take
from tidings.engines.embedded.bus import EmbeddedBus
from tidings.engines.embedded.inbox import SqliteMessageStore
from tidings.engines.embedded.presence import MemoryPresenceStore
from tidings.engines.embedded.userstore import SqliteUserStore
from tidings.engines.redis import RedisPresenceStore
from tidings.errors import LimitExceeded, Unavailable
from tidings.ports import Consumer, EventBus, MessageStore, PresenceStore, Record, UserStore

ENGINES = ["embedded"]
"""Engines of every port; the presence fixture adds "redis" (a real server, see below)."""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=ENGINES)
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventBus]:
    assert request.param == "embedded"
    engine = EmbeddedBus(tmp_path / "bus.db")
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture(params=ENGINES)
async def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageStore]:
    assert request.param == "embedded"
    engine = SqliteMessageStore.at(tmp_path / "inbox.db")
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture(params=ENGINES)
async def users(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    assert request.param == "embedded"
    engine = SqliteUserStore.at(tmp_path / "users.db")
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


REDIS_TIME_UNIT = 0.1
"""Real seconds per test second on Redis, whose TTLs run on the server's real clock."""


@dataclass
class PresenceEnv:
    """A store plus its notion of time: a fake clock (embedded) or real time (Redis).

    Tests express TTLs and waits in test seconds (``ttl(...)``, ``advance(...)``); the
    embedded engine reads a fake clock moved by ``advance``, Redis gets real TTLs scaled
    by ``unit`` and ``advance`` sleeps that long, so the assertions are the same for both.
    """

    store: PresenceStore
    clock: FakeClock | None = None
    unit: float = 1.0

    def ttl(self, seconds: float) -> float:
        return seconds * self.unit

    def now(self) -> float:
        return self.clock.now if self.clock is not None else time.time()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` (test seconds) pass as far as the store's TTLs are concerned."""
        if self.clock is not None:
            self.clock.now += seconds * self.unit
        else:
            await asyncio.sleep(seconds * self.unit)


async def delete_prefixed(url: str, prefix: str) -> None:
    """SCAN + DEL every key under ``prefix``."""
    client = Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=500):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture(params=[*ENGINES, "redis"])
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[PresenceEnv]:
    if request.param == "embedded":
        clock = FakeClock()
        yield PresenceEnv(MemoryPresenceStore(clock=clock), clock)
        return
    assert request.param == "redis"
    url: str = request.getfixturevalue("redis_url")
    # Per-test prefix for keys and channels: tests never see each other's state.
    store = RedisPresenceStore.from_url(url, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        yield PresenceEnv(store, unit=REDIS_TIME_UNIT)
    finally:
        await store.close()
        await delete_prefixed(url, store.prefix)


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


# --------------------------------------------------------------------------- inbox


def rows(user: str, device: int, ids: Sequence[str]) -> list[tuple[str, int, str, bytes]]:
    return [(user, device, sid, f"env-{sid}".encode()) for sid in ids]


async def test_inbox_append_is_idempotent_on_server_id(inbox: MessageStore) -> None:
    assert await inbox.append(rows("bob", 1, ["a", "b", "c"])) == 3
    assert await inbox.append(rows("bob", 1, ["a", "b", "c"])) == 0
    assert await inbox.append(rows("bob", 1, ["c", "d"])) == 1
    assert await inbox.append([("bob", 1, "a", b"different bytes")]) == 0
    items = await inbox.fetch("bob", 1, None, 100)
    assert [i.server_id for i in items] == ["a", "b", "c", "d"]
    assert items[0].envelope == b"env-a"  # the first copy wins
    assert await inbox.pending("bob", 1) == 4


async def test_inbox_same_server_id_for_two_devices_is_two_items(inbox: MessageStore) -> None:
    assert await inbox.append(rows("bob", 1, ["a"]) + rows("bob", 2, ["a"])) == 2
    assert [i.server_id for i in await inbox.fetch("bob", 2, None, 10)] == ["a"]
    assert await inbox.fetch("bob", 3, None, 10) == []


async def test_inbox_fetch_order_and_cursor_paging(inbox: MessageStore) -> None:
    ids = [f"m{i:02d}" for i in range(11)]
    for sid in ids:  # separate appends, interleaved with another device
        await inbox.append(rows("bob", 1, [sid]) + rows("carol", 1, [sid]))
    pages: list[list[str]] = []
    cursor: str | None = None
    while page := await inbox.fetch("bob", 1, cursor, 4):
        pages.append([i.server_id for i in page])
        cursor = page[-1].cursor
    assert pages == [ids[0:4], ids[4:8], ids[8:11]]
    assert await inbox.fetch("bob", 1, cursor, 4) == []


async def test_inbox_ack_removes_and_returns_pending_items(inbox: MessageStore) -> None:
    await inbox.append(rows("bob", 1, ["a", "b", "c", "d"]))
    acked = await inbox.ack("bob", 1, ["c", "a"])
    assert [(i.server_id, i.envelope) for i in acked] == [("a", b"env-a"), ("c", b"env-c")]
    assert [i.server_id for i in await inbox.fetch("bob", 1, None, 10)] == ["b", "d"]
    assert await inbox.pending("bob", 1) == 2

    assert await inbox.ack("bob", 1, ["a", "c"]) == []  # already acked: nothing pending
    assert await inbox.ack("bob", 1, ["nope"]) == []
    assert await inbox.ack("bob", 1, []) == []
    assert await inbox.ack("carol", 1, ["b"]) == []  # another inbox

    assert [i.server_id for i in await inbox.ack("bob", 1, ["b", "d", "zzz"])] == ["b", "d"]
    assert await inbox.fetch("bob", 1, None, 10) == []
    assert await inbox.pending("bob", 1) == 0


async def test_inbox_cursor_still_pages_after_acks(inbox: MessageStore) -> None:
    await inbox.append(rows("bob", 1, ["a", "b", "c", "d", "e"]))
    page = await inbox.fetch("bob", 1, None, 2)
    await inbox.ack("bob", 1, [i.server_id for i in page])
    assert [i.server_id for i in await inbox.fetch("bob", 1, page[-1].cursor, 2)] == ["c", "d"]
    await inbox.append(rows("bob", 1, ["f"]))
    assert [i.server_id for i in await inbox.fetch("bob", 1, None, 10)] == ["c", "d", "e", "f"]


async def test_inbox_acked_item_is_never_fetched_again_even_if_replayed(
    inbox: MessageStore,
) -> None:
    """A delivery batch replayed after a crash re-appends envelopes already acked."""
    await inbox.append(rows("bob", 1, ["a", "b"]))
    await inbox.ack("bob", 1, ["a", "b"])
    assert await inbox.append(rows("bob", 1, ["a", "b", "c"])) == 1
    assert [i.server_id for i in await inbox.fetch("bob", 1, None, 10)] == ["c"]


async def test_inbox_purge_device(inbox: MessageStore) -> None:
    await inbox.append(rows("bob", 1, ["a", "b"]) + rows("bob", 2, ["a"]))
    await inbox.ack("bob", 1, ["a"])
    await inbox.purge_device("bob", 1)
    assert await inbox.fetch("bob", 1, None, 10) == []
    assert await inbox.pending("bob", 1) == 0
    assert [i.server_id for i in await inbox.fetch("bob", 2, None, 10)] == ["a"]
    # a purged (relinked) device starts with an empty inbox that works as usual
    assert await inbox.append(rows("bob", 1, ["x"])) == 1
    assert [i.server_id for i in await inbox.fetch("bob", 1, None, 10)] == ["x"]


async def test_inbox_ping(inbox: MessageStore) -> None:
    await inbox.ping()


# --------------------------------------------------------------------------- user store


def user(uid: str, phone: str) -> User:
    return User(uid, phone, created_at=1.0, display_name=uid)


def device(uid: str, device_id: int = 0, registration_id: int = 7) -> Device:
    return Device(uid, device_id, f"{uid}-phone", registration_id, created_at=2.0)


async def test_users_phone_is_unique(users: UserStore) -> None:
    alice = user("alice", "+14155550001")
    assert await users.create_user(alice) == (alice, True)
    impostor = user("impostor", "+14155550001")
    assert await users.create_user(impostor) == (alice, False)
    assert await users.create_user(alice) == (alice, False)
    assert await users.get_user("impostor") is None
    assert await users.get_user("alice") == alice
    bob = user("bob", "+14155550002")
    assert (await users.create_user(bob))[1]
    assert await users.users_by_phone(["+14155550001", "+14155550002", "+19999999999"]) == {
        "+14155550001": alice,
        "+14155550002": bob,
    }
    assert await users.users_by_phone([]) == {}


async def test_users_push_token_moves_and_conditional_remove(users: UserStore) -> None:
    fcm, apns = PushToken(Provider.FCM, "tok", True, 3.0), PushToken(Provider.APNS, "tok")
    await users.set_push_token("alice", 1, fcm)
    await users.set_push_token("alice", 2, apns)  # same string, other provider: both kept
    assert await users.push_tokens_of("alice") == {1: fcm, 2: apns}
    await users.set_push_token("bob", 1, fcm)  # moves off alice's device 1
    assert await users.get_push_token("alice", 1) is None
    assert await users.get_push_token("bob", 1) == fcm
    assert not await users.remove_push_token("bob", 1, "other")  # no longer that token
    assert await users.remove_push_token("bob", 1, "tok")
    assert not await users.remove_push_token("bob", 1)
    assert await users.push_tokens_of("bob") == {}


async def test_users_concurrent_create_same_phone_creates_once(users: UserStore) -> None:
    results = await asyncio.gather(
        *(users.create_user(user(f"u{i}", "+14155550009")) for i in range(10))
    )
    assert sum(created for _, created in results) == 1
    assert len({u.id for u, _ in results}) == 1


async def test_users_add_device_assigns_increasing_ids_and_enforces_max(users: UserStore) -> None:
    await users.create_user(user("alice", "+14155550003"))
    await users.put_primary_device(device("alice", PRIMARY_DEVICE))
    second = await users.add_device(device("alice", registration_id=22), max_devices=3)
    third = await users.add_device(device("alice", registration_id=33), max_devices=3)
    assert (second.device_id, third.device_id) == (2, 3)
    assert (second.registration_id, third.registration_id) == (22, 33)
    with pytest.raises(LimitExceeded):
        await users.add_device(device("alice"), max_devices=3)
    assert [d.device_id for d in await users.list_devices("alice")] == [1, 2, 3]

    assert await users.remove_device("alice", 3)
    assert not await users.remove_device("alice", 3)
    fourth = await users.add_device(device("alice"), max_devices=3)
    assert fourth.device_id == 4  # ids are never reused
    assert [d.device_id for d in await users.list_devices("alice")] == [1, 2, 4]


async def test_users_concurrent_add_device_respects_max(users: UserStore) -> None:
    await users.create_user(user("alice", "+14155550004"))
    await users.put_primary_device(device("alice", PRIMARY_DEVICE))
    results = await asyncio.gather(
        *(users.add_device(device("alice"), max_devices=4) for _ in range(8)),
        return_exceptions=True,
    )
    added = [r for r in results if isinstance(r, Device)]
    assert sorted(d.device_id for d in added) == [2, 3, 4]
    assert all(isinstance(r, LimitExceeded) for r in results if not isinstance(r, Device))


async def test_users_claim_one_time_prekey_never_twice(users: UserStore) -> None:
    keys = [OneTimePreKey(i, bytes([i]) * 32) for i in range(1, 21)]
    assert await users.add_one_time_prekeys("bob", 1, keys, max_stored=100) == 20
    claims = await asyncio.gather(*(users.claim_one_time_prekey("bob", 1) for _ in range(50)))
    claimed = [c for c in claims if c is not None]
    assert len(claimed) == 20
    assert sorted(c.key_id for c in claimed) == list(range(1, 21))
    assert set(claimed) == set(keys)
    assert await users.count_one_time_prekeys("bob", 1) == 0
    assert await users.claim_one_time_prekey("bob", 1) is None


async def test_users_one_time_prekeys_replace_and_limit(users: UserStore) -> None:
    await users.add_one_time_prekeys("bob", 1, [OneTimePreKey(1, b"a" * 32)], max_stored=2)
    assert await users.add_one_time_prekeys("bob", 1, [OneTimePreKey(1, b"b" * 32)], 2) == 1
    with pytest.raises(LimitExceeded):
        await users.add_one_time_prekeys(
            "bob", 1, [OneTimePreKey(2, b"c" * 32), OneTimePreKey(3, b"d" * 32)], max_stored=2
        )
    assert await users.count_one_time_prekeys("bob", 1) == 1  # the refused upload left nothing
    assert await users.claim_one_time_prekey("bob", 1) == OneTimePreKey(1, b"b" * 32)
    assert await users.count_one_time_prekeys("bob", 2) == 0


async def test_users_signed_prekey_roundtrip(users: UserStore) -> None:
    assert await users.get_signed_prekey("bob", 1) is None
    first = SignedPreKey(1, b"p" * 32, b"s" * 64)
    await users.set_signed_prekey("bob", 1, first)
    assert await users.get_signed_prekey("bob", 1) == first
    rotated = SignedPreKey(2, b"q" * 32, b"t" * 64)
    await users.set_signed_prekey("bob", 1, rotated)
    assert await users.get_signed_prekey("bob", 1) == rotated
    assert await users.get_signed_prekey("bob", 2) is None

    assert await users.get_identity_key("bob") is None
    await users.set_identity_key("bob", b"i" * 32)
    assert await users.get_identity_key("bob") == b"i" * 32


async def test_users_put_primary_device_drops_old_keys(users: UserStore) -> None:
    await users.create_user(user("bob", "+14155550005"))
    await users.put_primary_device(device("bob", PRIMARY_DEVICE, registration_id=1))
    await users.set_signed_prekey("bob", 1, SignedPreKey(1, b"p" * 32, b"s" * 64))
    await users.add_one_time_prekeys("bob", 1, [OneTimePreKey(1, b"o" * 32)], 10)
    await users.put_primary_device(device("bob", PRIMARY_DEVICE, registration_id=2))
    (primary,) = await users.list_devices("bob")
    assert (primary.device_id, primary.registration_id) == (1, 2)
    assert await users.get_signed_prekey("bob", 1) is None
    assert await users.count_one_time_prekeys("bob", 1) == 0


async def test_users_groups_membership(users: UserStore) -> None:
    assert await users.get_group("g1") is None
    group = Group("g1", "friends", "alice", 3.0, {"alice": Role.ADMIN, "bob": Role.MEMBER})
    await users.create_group(group)
    assert await users.get_group("g1") == group

    await users.set_member("g1", "carol", Role.MEMBER)
    await users.set_member("g1", "bob", Role.ADMIN)
    await users.remove_member("g1", "alice")
    await users.remove_member("g1", "nobody")
    stored = await users.get_group("g1")
    assert stored is not None
    assert stored.members == {"bob": Role.ADMIN, "carol": Role.MEMBER}
    assert stored.is_admin("bob")
    assert not stored.is_member("alice")
    assert (stored.name, stored.created_by) == ("friends", "alice")


async def test_users_contacts(users: UserStore) -> None:
    await users.add_contacts("alice", ["carol", "bob", "bob"], max_contacts=2)
    assert await users.list_contacts("alice") == ["bob", "carol"]
    assert await users.has_contact("alice", "bob")
    assert not await users.has_contact("bob", "alice")
    with pytest.raises(LimitExceeded):
        await users.add_contacts("alice", ["dave"], max_contacts=2)
    await users.remove_contact("alice", "bob")
    assert await users.list_contacts("alice") == ["carol"]


async def test_users_ping(users: UserStore) -> None:
    await users.ping()


# --------------------------------------------------------------------------- presence


async def test_presence_publish_counts_subscribers(presence: PresenceEnv) -> None:
    store = presence.store
    assert await store.publish("device:bob:1", b"nobody home") == 0
    first = await store.subscribe("device:bob:1")
    second = await store.subscribe("device:bob:1")
    other = await store.subscribe("device:bob:2")
    try:
        assert await store.publish("device:bob:1", b"wake") == 2
        for sub in (first, second):
            message = await asyncio.wait_for(anext(aiter(sub)), timeout=1.0)
            assert message == b"wake"
        await second.close()
        assert await store.publish("device:bob:1", b"again") == 1
        assert await asyncio.wait_for(anext(aiter(first)), timeout=1.0) == b"again"
    finally:
        await first.close()
        await other.close()
    assert await store.publish("device:bob:1", b"gone") == 0


async def test_presence_subscription_ends_on_close(presence: PresenceEnv) -> None:
    sub = await presence.store.subscribe("chan")
    await presence.store.publish("chan", b"one")
    await sub.close()
    received = [m async for m in sub]
    assert received in ([], [b"one"])


async def test_presence_put_if_absent(presence: PresenceEnv) -> None:
    store = presence.store
    assert await store.put_if_absent("k", b"first", ttl=presence.ttl(2)) is None
    assert await store.put_if_absent("k", b"second", ttl=presence.ttl(2)) == b"first"
    assert await store.get("k") == b"first"
    await presence.advance(2.5)
    assert await store.get("k") is None
    assert await store.put_if_absent("k", b"third", ttl=presence.ttl(2)) is None
    assert await store.get("k") == b"third"


async def test_presence_put_if_absent_is_atomic_under_concurrency(presence: PresenceEnv) -> None:
    results = await asyncio.gather(
        *(
            presence.store.put_if_absent("race", str(i).encode(), ttl=presence.ttl(60))
            for i in range(20)
        )
    )
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    winner = str(winners[0]).encode()
    assert all(r == winner for r in results if r is not None)
    assert await presence.store.get("race") == winner


async def test_presence_incr_with_ttl(presence: PresenceEnv) -> None:
    store = presence.store
    ttl = presence.ttl(4)
    assert [await store.incr("attempts", ttl=ttl) for _ in range(3)] == [1, 2, 3]
    await presence.advance(2)
    assert await store.incr("attempts", ttl=ttl) == 4  # increments keep the first expiry
    await presence.advance(2.5)
    assert await store.incr("attempts", ttl=ttl) == 1
    assert await store.incr("other", ttl=ttl) == 1


async def test_presence_set_get_delete_with_ttl(presence: PresenceEnv) -> None:
    store = presence.store
    ttl = presence.ttl(5)
    assert await store.get("k") is None
    await store.set("k", b"v", ttl=ttl)
    assert await store.get("k") == b"v"
    await store.set("k", b"w", ttl=ttl)
    await presence.advance(3)
    assert await store.get("k") == b"w"
    await presence.advance(2.5)
    assert await store.get("k") is None
    await store.set("k", b"x", ttl=ttl)
    await store.delete("k")
    await store.delete("missing")
    assert await store.get("k") is None


async def test_presence_online_expires(presence: PresenceEnv) -> None:
    store = presence.store
    await store.set_online("bob", 1, ttl=presence.ttl(3))
    (bob,) = await store.get_presence(["bob"])
    assert bob.online
    await presence.advance(3.5)
    (bob, carol) = await store.get_presence(["bob", "carol"])
    assert not bob.online
    assert not carol.online
    assert carol.last_seen is None

    await store.set_online("bob", 1, ttl=presence.ttl(3))
    now = presence.now()
    await store.set_offline("bob", 1, now=now)
    (bob,) = await store.get_presence(["bob"])
    assert (bob.online, bob.last_seen) == (False, now)


async def test_presence_online_while_any_device_is(presence: PresenceEnv) -> None:
    store = presence.store
    assert await store.get_presence([]) == []
    await store.set_online("bob", 1, ttl=presence.ttl(3))
    await store.set_online("bob", 2, ttl=presence.ttl(60))
    await store.set_online("carol", 1, ttl=presence.ttl(60))
    now = presence.now()
    await store.set_offline("carol", 1, now=now)
    await presence.advance(3.5)  # device 1 lapsed, device 2 still online
    bob, carol, dave = await store.get_presence(["bob", "carol", "dave"])
    assert (bob.online, bob.last_seen) == (True, None)
    assert (carol.online, carol.last_seen) == (False, now)
    assert (dave.online, dave.last_seen) == (False, None)
    await store.set_offline("bob", 2, now=now + 1.5)
    (bob,) = await store.get_presence(["bob"])
    assert (bob.online, bob.last_seen) == (False, now + 1.5)


async def test_presence_take_token(presence: PresenceEnv) -> None:
    limit = Limit(rate=1.0, burst=2)
    now = presence.now()
    assert (await presence.store.take_token("send:bob", limit, now)).allowed
    assert (await presence.store.take_token("send:bob", limit, now)).allowed
    refused = await presence.store.take_token("send:bob", limit, now)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1.0)
    assert (await presence.store.take_token("send:carol", limit, now)).allowed
    assert (await presence.store.take_token("send:bob", limit, now + 1.0)).allowed


async def test_presence_take_token_decides_like_core_ratelimit(presence: PresenceEnv) -> None:
    """Exactly the decisions of ``core.ratelimit.take`` with the idle expiry of buckets."""
    rng = random.Random(7)
    limits = {"a": Limit(rate=2.5, burst=3), "b": Limit(rate=0.3, burst=1), "c": Limit(0.0, 2)}
    held: dict[str, tuple[Bucket, float]] = {}
    now = presence.now()
    for _ in range(300):
        now += rng.choice([0.0, 0.0, 0.01, 0.1, 0.37, 1.0, 4.0, 12.0])
        key = rng.choice(sorted(limits))
        cost = rng.choice([1.0, 1.0, 0.5, 2.0])
        limit = limits[key]
        bucket = held[key][0] if key in held and held[key][1] > now else None
        expected, updated = take(bucket, limit, now, cost)
        held[key] = (updated, now + idle_expiry(limit))
        assert await presence.store.take_token(key, limit, now, cost) == expected


async def test_presence_ping(presence: PresenceEnv) -> None:
    await presence.store.ping()


async def test_redis_engine_down_is_unavailable() -> None:
    """Driver errors come back as ``Unavailable`` (nothing listens on port 1)."""
    store = RedisPresenceStore.from_url("redis://127.0.0.1:1/0", prefix="nowhere:")
    try:
        with pytest.raises(Unavailable) as caught:
            await store.ping()
        assert caught.value.retryable
        with pytest.raises(Unavailable):
            await store.publish("chan", b"x")
        with pytest.raises(Unavailable):
            await store.subscribe("chan")
    finally:
        await store.close()
