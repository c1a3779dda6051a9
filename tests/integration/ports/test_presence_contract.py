"""PresenceStore contract: presence TTLs, channels, token buckets, atomic keys."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pytest

from contract_support import REDIS_TIME_UNIT, FakeClock, PresenceEnv, delete_prefixed
from tidings.core.ratelimit import Bucket, Limit, idle_expiry, take
from tidings.engines.embedded.presence import MemoryPresenceStore
from tidings.engines.redis import RedisPresenceStore
from tidings.errors import Unavailable

# --------------------------------------------------------------------------- fixture


@pytest.fixture(params=["embedded", "redis"])
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


async def test_presence_reap_hands_each_expired_device_to_one_caller(
    presence: PresenceEnv,
) -> None:
    store = presence.store
    started = presence.now()
    await store.set_online("bob", 1, ttl=presence.ttl(2))
    await store.set_online("bob", 2, ttl=presence.ttl(20))
    await store.set_online("carol", 1, ttl=presence.ttl(2))
    await store.set_offline("carol", 1, now=started)  # a clean disconnect is never reaped
    await store.set_online("dave", 1, ttl=presence.ttl(2))
    await store.set_online("dave", 1, ttl=presence.ttl(20))  # a heartbeat extends it
    assert await store.reap_expired(presence.now(), limit=10) == []

    await presence.advance(3)
    reaped = await asyncio.gather(*(store.reap_expired(presence.now(), limit=10) for _ in range(4)))
    assert sorted(d for batch in reaped for d in batch) == [("bob", 1)]
    assert await store.reap_expired(presence.now(), limit=10) == []
    bob, carol = await store.get_presence(["bob", "carol"])
    assert bob.online  # device 2 still is
    assert bob.last_seen is not None
    assert started + presence.ttl(2) - 0.5 <= bob.last_seen <= presence.now()
    assert (carol.online, carol.last_seen) == (False, started)


async def test_presence_reap_respects_limit(presence: PresenceEnv) -> None:
    store = presence.store
    for device in range(1, 6):
        await store.set_online("erin", device, ttl=presence.ttl(1))
    await presence.advance(2)
    first = await store.reap_expired(presence.now(), limit=3)
    rest = await store.reap_expired(presence.now(), limit=3)
    assert len(first) == 3
    assert sorted(first + rest) == [("erin", d) for d in range(1, 6)]
    (erin,) = await store.get_presence(["erin"])
    assert not erin.online


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
