"""PresenceStore contract: presence TTLs, channels, token buckets, atomic keys."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import ConnectionPool, Redis

from contract_support import REDIS_TIME_UNIT, FakeClock, PresenceEnv, delete_prefixed
from tidings.bootstrap import _presence
from tidings.config import Settings
from tidings.core.model import Presence
from tidings.core.ratelimit import Bucket, Limit, idle_expiry, take
from tidings.engines.embedded.presence import MemoryPresenceStore
from tidings.engines.redis import RedisPresenceStore
from tidings.errors import Unavailable
from tidings.ports import Subscription

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


async def _next(sub: Subscription, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(anext(aiter(sub)), timeout=timeout)


async def test_presence_publish_counts_subscribers(presence: PresenceEnv) -> None:
    """``publish`` counts receiving stores (processes), not sockets: local subscribers of
    one channel count once (Redis counts its one Pub/Sub connection), each gets a copy."""
    store = presence.store
    assert await store.publish("device:bob:1", b"nobody home") == 0
    first = await store.subscribe("device:bob:1")
    second = await store.subscribe("device:bob:1")
    other = await store.subscribe("device:bob:2")
    try:
        assert await store.publish("device:bob:1", b"wake") == 1
        for sub in (first, second):
            assert await _next(sub) == b"wake"
        await second.close()
        assert await store.publish("device:bob:1", b"again") == 1
        assert await _next(first) == b"again"
        assert await store.publish("device:bob:2", b"you") == 1
        assert await _next(other) == b"you"
    finally:
        await first.close()
        await other.close()
    assert await store.publish("device:bob:1", b"gone") == 0
    assert await store.publish("device:bob:2", b"gone") == 0


async def test_presence_resubscribe_in_quick_succession(presence: PresenceEnv) -> None:
    """close-then-subscribe of one channel, overlapping: one live subscription remains."""
    store = presence.store
    current = await store.subscribe("chan")
    closing = asyncio.ensure_future(current.close())
    current = await store.subscribe("chan")
    await closing
    for round_ in range(20):
        old = current
        _, current = await asyncio.gather(old.close(), store.subscribe("chan"))
        assert [m async for m in old] == []  # the closed one has ended
        assert await store.publish("chan", f"m{round_}".encode()) == 1
        assert await _next(current) == f"m{round_}".encode()
    # a subscribe abandoned half-way (its caller cancelled) leaves nothing behind
    abandoning = asyncio.ensure_future(store.subscribe("other"))
    await asyncio.sleep(0)  # let it start (Redis: SUBSCRIBE queued, confirmation awaited)
    abandoning.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await (await abandoning).close()  # the in-memory store had finished already
    again = await store.subscribe("other")
    await again.close()  # confirmed after whatever the abandoned one left queued
    assert await store.publish("other", b"nobody") == 0
    assert await store.publish("chan", b"still") == 1
    assert await _next(current) == b"still"
    await current.close()
    assert await store.publish("chan", b"gone") == 0


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


async def test_presence_get_many_answers_in_order_and_forgets_expired_keys(
    presence: PresenceEnv,
) -> None:
    store = presence.store
    assert await store.get_many([]) == []
    await store.set_many([("a", b"1", presence.ttl(5)), ("b", b"2", presence.ttl(10))])
    assert await store.get_many(["b", "missing", "a", "b"]) == [b"2", None, b"1", b"2"]
    await presence.advance(6)
    assert await store.get_many(["a", "b"]) == [None, b"2"]


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


async def test_presence_set_online_and_offline_answer_the_users_presence(
    presence: PresenceEnv,
) -> None:
    """What a connect or a close announces comes from the write itself (no read after)."""
    store = presence.store
    ttl = presence.ttl(30)
    assert await store.set_online("fay", 1, ttl=ttl) == Presence("fay", True, None)
    assert await store.set_online("fay", 2, ttl=ttl) == Presence("fay", True, None)
    first = presence.now()
    # another device still online: the user stays online, last seen now
    assert await store.set_offline("fay", 1, now=first) == Presence("fay", True, first)
    await presence.advance(1)
    later = presence.now()
    assert await store.set_offline("fay", 2, now=later) == Presence("fay", False, later)
    assert await store.set_online("fay", 1, ttl=ttl) == Presence("fay", True, later)
    assert await store.get_presence(["fay"]) == [Presence("fay", True, later)]


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


# --------------------------------------------------------------------------- Redis only
# One Pub/Sub connection per store, a bounded command pool.

StoreFactory = Callable[..., RedisPresenceStore]


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url


@pytest.fixture
async def redis_stores(redis_url: str) -> AsyncIterator[StoreFactory]:
    """Makes Redis stores (``query`` adds URL options; ``prefix`` shares one between
    stores, like two processes of a region); closes them and deletes their keys."""
    made: list[RedisPresenceStore] = []

    def make(
        query: str = "", prefix: str | None = None, url: str | None = None
    ) -> RedisPresenceStore:
        store = RedisPresenceStore.from_url(
            _with_query(url or redis_url, query), prefix=prefix or f"test:{uuid.uuid4().hex}:"
        )
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.close()
        for prefix in {store.prefix for store in made}:
            await delete_prefixed(redis_url, prefix)


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client to look at the server (CLIENT LIST, PUBSUB NUMSUB)."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def _clients(admin: Redis, name: str) -> list[dict[str, str]]:
    return [c for c in await admin.client_list() if c.get("name") == name]


async def test_redis_subscriptions_share_one_pubsub_connection(
    redis_stores: StoreFactory, admin: Redis
) -> None:
    store = redis_stores()
    subs = await asyncio.gather(*(store.subscribe(f"device:u{i}:1") for i in range(500)))
    try:
        (pubsub,) = await _clients(admin, f"{store.prefix}pubsub")
        assert int(pubsub["sub"]) == 500
        counts = await asyncio.gather(
            *(store.publish(f"device:u{i}:1", f"to {i}".encode()) for i in range(500))
        )
        assert counts == [1] * 500
        received = await asyncio.gather(*(_next(sub) for sub in subs))
        assert received == [f"to {i}".encode() for i in range(500)]
    finally:
        await asyncio.gather(*(sub.close() for sub in subs))
    (pubsub,) = await _clients(admin, f"{store.prefix}pubsub")
    assert int(pubsub["sub"]) == 0  # every channel unsubscribed, the connection kept


async def test_redis_connect_storm_subscribes_on_one_connection(
    redis_stores: StoreFactory, admin: Redis
) -> None:
    """2,000 subscriptions at once (a connect storm), from a store without a connection
    yet: all confirmed, on one connection."""
    store = redis_stores()
    subs = await asyncio.gather(*(store.subscribe(f"device:s{i}:1") for i in range(2000)))
    try:
        (pubsub,) = await _clients(admin, f"{store.prefix}pubsub")
        assert int(pubsub["sub"]) == 2000
        assert await store.publish("device:s1999:1", b"last") == 1
        assert await _next(subs[1999]) == b"last"
    finally:
        await asyncio.gather(*(sub.close() for sub in subs))


async def test_redis_local_subscribers_of_one_channel(
    redis_stores: StoreFactory, admin: Redis
) -> None:
    store = redis_stores()
    first, second = await asyncio.gather(store.subscribe("chan"), store.subscribe("chan"))
    channel = f"{store.prefix}chan"
    assert await admin.pubsub_numsub(channel) == [(channel.encode(), 1)]
    assert await store.publish("chan", b"both") == 1
    assert (await _next(first), await _next(second)) == (b"both", b"both")
    await first.close()
    assert await store.publish("chan", b"one") == 1
    assert await _next(second) == b"one"
    await second.close()
    assert await admin.pubsub_numsub(channel) == [(channel.encode(), 0)]
    assert await store.publish("chan", b"none") == 0


async def test_redis_publish_counts_each_store(redis_stores: StoreFactory) -> None:
    """Two stores on one prefix are two processes of a region: each counts once."""
    one = redis_stores()
    two = redis_stores(prefix=one.prefix)
    subs = [await one.subscribe("chan"), await one.subscribe("chan"), await two.subscribe("chan")]
    assert await two.publish("chan", b"hi") == 2
    assert [await _next(sub) for sub in subs] == [b"hi"] * 3
    await subs[2].close()
    assert await two.publish("chan", b"again") == 1


async def test_redis_command_burst_waits_for_a_pooled_connection(
    redis_stores: StoreFactory, admin: Redis
) -> None:
    store = redis_stores("max_connections=8&timeout=60")
    await asyncio.gather(*(store.set_online(f"u{i}", 1, ttl=600) for i in range(2000)))
    presences = await store.get_presence([f"u{i}" for i in range(2000)])
    assert all(p.online for p in presences)
    assert 1 <= len(await _clients(admin, f"{store.prefix}cmd")) <= 8


async def test_redis_exhausted_pool_is_unavailable(redis_stores: StoreFactory) -> None:
    store = redis_stores("max_connections=1&timeout=0.05")
    await store.ping()  # the pool's one connection exists
    pool = store._redis.connection_pool
    held = await pool.get_connection()  # everything else now waits, then gives up
    try:
        with pytest.raises(Unavailable, match="connection pool is exhausted") as caught:
            await store.set_online("bob", 1, ttl=60)
        assert caught.value.retryable
        assert "TIDINGS_REDIS_MAX_CONNECTIONS" in str(caught.value)
    finally:
        await pool.release(held)
    await store.set_online("bob", 1, ttl=60)


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", (7, 2.5)), ("max_connections=3&timeout=1.5", (3, 1.5)), ("timeout=9", (7, 9.0))],
)
async def test_redis_pool_settings_unless_the_url_says(
    redis_url: str, query: str, expected: tuple[int, float]
) -> None:
    """``TIDINGS_REDIS_MAX_CONNECTIONS`` / ``_POOL_TIMEOUT`` size the command pool; the
    URL's ``?max_connections=`` / ``?timeout=`` win over them."""
    settings = Settings(
        redis_url=_with_query(redis_url, query), redis_max_connections=7, redis_pool_timeout=2.5
    )
    store = _presence(settings, time.time)
    assert isinstance(store, RedisPresenceStore)
    try:
        pool = store._redis.connection_pool
        assert isinstance(pool, ConnectionPool)
        assert (pool.max_connections, pool.timeout) == expected
        await store.ping()
    finally:
        await store.close()


async def _ends_unavailable(sub: Subscription) -> None:
    with pytest.raises(Unavailable):
        async for _ in sub:
            pass


async def test_redis_lost_pubsub_connection_ends_every_subscription(
    redis_stores: StoreFactory, admin: Redis
) -> None:
    store = redis_stores()
    subs = [await store.subscribe(c) for c in ("a", "b", "b", "c")]
    (pubsub,) = await _clients(admin, f"{store.prefix}pubsub")
    await admin.execute_command("CLIENT", "KILL", "ID", pubsub["id"])
    await asyncio.wait_for(asyncio.gather(*(_ends_unavailable(s) for s in subs)), timeout=10)
    for sub in subs:
        await sub.close()
    fresh = await store.subscribe("b")
    try:
        (again,) = await _clients(admin, f"{store.prefix}pubsub")
        assert again["id"] != pubsub["id"]
        assert await store.publish("b", b"back") == 1
        assert await _next(fresh) == b"back"
    finally:
        await fresh.close()


class _FreezableProxy:
    """A TCP relay to Redis that can stop relaying while keeping its sockets open: a
    server that went silent, which only a health check notices."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_redis_silent_pubsub_connection_is_detected(
    redis_url: str, redis_stores: StoreFactory
) -> None:
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxy = _FreezableProxy(host, int(port))
    proxied = f"redis://127.0.0.1:{await proxy.start()}/{redis_url.rsplit('/', 1)[1]}"
    try:
        store = redis_stores("health_check_interval=1", url=proxied)
        subs = [await store.subscribe("a"), await store.subscribe("b")]
        proxy.flowing.clear()  # Redis "goes silent": no byte moves either way
        await asyncio.wait_for(asyncio.gather(*(_ends_unavailable(s) for s in subs)), timeout=15)
        for sub in subs:
            await sub.close()
        proxy.flowing.set()
        fresh = await store.subscribe("a")
        assert await store.publish("a", b"back") == 1
        assert await _next(fresh) == b"back"
        await fresh.close()
        await store.close()
    finally:
        await proxy.close()


async def test_redis_callers_of_one_moment_share_a_round_trip(
    redis_stores: StoreFactory, admin: Redis
) -> None:
    """Rate limits, dedupe claims and states, presence updates of many callers at once:
    one pipeline for all of them, each caller its own replies; a script the server lost
    is loaded again."""
    store = redis_stores()
    shared: Any = store._shared
    trips = [0]
    flush = shared._flush

    def counted_flush() -> None:
        trips[0] += 1
        flush()

    shared._flush = counted_flush
    limit = Limit(rate=1.0, burst=2)
    decisions = await asyncio.gather(*(store.take_token("k", limit, 100.0) for _ in range(3)))
    assert [d.allowed for d in decisions] == [True, True, False]
    claims = await asyncio.gather(
        store.put_many_if_absent([("a", b"1", 60), ("b", b"2", 60)]),
        store.put_many_if_absent([("a", b"3", 60)]),
        store.set_many([("c", b"4", 60)]),
    )
    assert claims == [[None, None], [b"1"], None]
    # sockets connecting and closing at once: their presence updates are scripts too
    online = await asyncio.gather(*(store.set_online("gil", d, ttl=60) for d in (1, 2, 3)))
    assert online == [Presence("gil", True, None)] * 3
    offline = await asyncio.gather(
        store.set_offline("gil", 1, 5.0), store.set_offline("hal", 1, 5.0)
    )
    assert offline == [Presence("gil", True, 5.0), Presence("hal", False, 5.0)]
    assert trips[0] == 4

    await admin.script_flush()
    assert (await store.take_token("other", limit, 100.0)).allowed
    assert await store.set_online("hal", 1, ttl=60) == Presence("hal", True, 5.0)
    assert await store.set_offline("gil", 2, 6.0) == Presence("gil", True, 6.0)
