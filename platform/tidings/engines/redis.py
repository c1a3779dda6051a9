"""PresenceStore on a real Redis server (redis-py's asyncio client).

Layout, every key and channel under ``prefix`` (default ``tidings:``):

- ``presence:<user>:<device>``: ``1`` with a PX TTL while the device is online;
- ``presence-devices:<user>``: the set of device ids that were set online (an index,
  so ``get_presence`` never scans the keyspace; it expires with the longest TTL given);
- ``last-seen``: hash user -> last ``set_offline`` time (``repr`` of the float);
- ``presence-expiry``: sorted set ``<user>\\n<device>`` scored by when the device's
  online TTL runs out, so ``reap_expired`` finds devices whose gateway died;
- ``bucket:<key>``: token bucket hash ``tokens``/``updated``/``expires``;
- ``kv:<key>``: ``put_if_absent``/``get``/``set``/``delete``/``incr`` values;
- pub/sub channel ``<prefix><channel>`` (Pub/Sub ignores the database number, so the
  prefix is what isolates two stores sharing a server).

Connections. A store holds two kinds, so the number of Redis connections of a gateway
does not grow with its sockets:

- Commands go through a bounded pool (``redis.asyncio.BlockingConnectionPool``): at most
  ``max_connections`` (default 64; ``?max_connections=N`` in the URL) named
  ``<prefix>cmd``. A burst waits up to ``timeout`` seconds (default 5; ``?timeout=S``)
  for a free connection instead of failing; a pool still exhausted after that raises
  ``Unavailable`` saying so (raise ``max_connections`` or add gateways).
- Pub/Sub takes ONE connection per store (per process), named ``<prefix>pubsub``,
  outside the pool, multiplexed to every subscription: a reader task dispatches each
  message to the local subscribers of its channel (each gets a copy in its own bounded
  queue; the oldest is dropped when a consumer falls behind). The first local
  subscriber of a channel SUBSCRIBEs it and the last one to close UNSUBSCRIBEs it, each
  waiting for the server's confirmation; commands that arrive together (a connect
  storm) go out as one SUBSCRIBE/UNSUBSCRIBE with many channels in one write, and each
  waiter is released by its own channel's confirmation. A silent connection is found
  by a PING after ``health_check_interval`` seconds without traffic (default 10;
  ``?health_check_interval=S``) that gets no answer within as long again.

  Because Redis counts one receiver per subscribed connection, ``publish`` returns how
  many *stores* (processes) hold a live subscription on the channel, not how many
  sockets: 0 still means nobody, anywhere, is subscribed (the device is offline).
  When the Pub/Sub connection is lost (Redis restarted, the client killed, no PING
  answer) every live subscription ends with ``Unavailable`` from its iterator and the
  next ``subscribe`` opens a fresh connection.

Every driver error is translated into ``tidings.errors.Unavailable`` (``raise ... from``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from tidings.core.model import Presence
from tidings.core.ratelimit import Decision, Limit, idle_expiry
from tidings.errors import Unavailable

_QUEUE_DEPTH = 1024
_CONFIRM_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 64
"""Command connections per store (per process) unless the URL says ``max_connections``."""
DEFAULT_POOL_TIMEOUT = 5.0
"""Seconds a command waits for a free pooled connection unless the URL says ``timeout``."""
DEFAULT_HEALTH_CHECK_INTERVAL = 10.0
"""Seconds of Pub/Sub silence before a PING (``health_check_interval`` in the URL)."""
_MAX_CHANNELS_PER_COMMAND = 1000

# Mirrors tidings.core.ratelimit.take step by step (and MemoryPresenceStore.take_token's
# idle expiry), in the same IEEE-754 double arithmetic and operation order, so the Redis
# engine makes exactly the decisions the in-memory one makes: keep the two in sync.
# Floats cross the boundary as "%.17g" / Python repr strings, which round-trip exactly
# (a Lua number returned as such would be truncated to an integer by Redis).
# KEYS[1] bucket hash; ARGV: rate, burst, now, cost, idle expiry (s), key PX (ms).
_TAKE_TOKEN_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local idle = tonumber(ARGV[5])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'expires')
local tokens
if held[1] and held[2] and held[3] and tonumber(held[3]) > now then
  local elapsed = math.max(0.0, now - tonumber(held[2]))
  tokens = math.min(burst, tonumber(held[1]) + elapsed * rate)
else
  tokens = burst
end
local allowed = 0
local wait = 0.0
if tokens >= cost then
  allowed = 1
  tokens = tokens - cost
elseif rate > 0 then
  wait = (cost - tokens) / rate
else
  wait = math.huge
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'updated', string.format('%.17g', now), 'expires', string.format('%.17g', now + idle))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {allowed, string.format('%.17g', wait)}
"""

# KEYS[1] counter; ARGV[1] TTL (ms), set only when INCR creates the key (at 1).
_INCR_LUA = """
local value = redis.call('INCR', KEYS[1])
if value == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return value
"""


# KEYS[1] expiry zset, KEYS[2] last-seen hash; ARGV: now, limit, devices-index key prefix.
# One script, so each expired device goes to exactly one reaper.
_REAP_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #due, 2 do
  local member, expired_at = due[i], due[i + 1]
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, '\\n', 1, true)
  local user, device = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  redis.call('SREM', ARGV[3] .. user, device)
  local seen = tonumber(redis.call('HGET', KEYS[2], user) or '0')
  if tonumber(expired_at) > seen then
    redis.call('HSET', KEYS[2], user, string.format('%.17g', tonumber(expired_at)))
  end
  out[#out + 1] = member
end
return out
"""


def _as_bytes(value: object) -> bytes | None:
    """Replies are bytes (the client never decodes); anything else is a protocol error."""
    if value is None or isinstance(value, bytes):
        return value
    raise Unavailable(f"redis: unexpected reply {value!r}")


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(f"redis: {what} failed: {exc}") from exc


def _client_name(prefix: str, role: str) -> str:
    """A CLIENT SETNAME value: printable ASCII without spaces, as Redis requires."""
    return "".join(c if "!" <= c <= "~" else "_" for c in f"{prefix}{role}")


class _PoolExhausted(RedisConnectionError):
    """Every pooled connection stayed busy for the pool's whole timeout."""


class _BoundedPool(aioredis.BlockingConnectionPool):
    """A blocking pool whose give-up names the pool and what to do about it."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if not isinstance(exc.__cause__, TimeoutError):
                raise
            raise _PoolExhausted(
                f"the Redis connection pool is exhausted (all {self.max_connections} "
                f"connections busy for {self.timeout} s); raise max_connections in "
                "TIDINGS_REDIS_URL (?max_connections=N) or add gateways"
            ) from exc


class RedisSubscription:
    """One local subscriber of a channel of the store's shared Pub/Sub connection;
    yields message payloads as bytes.

    Messages wait in a bounded queue (the oldest is dropped when a consumer falls
    behind, as in the in-memory engine). ``close`` leaves the channel, UNSUBSCRIBEs it
    when this was the last local subscriber and waits for the server to confirm (so a
    later ``publish`` no longer counts this process), then ends iteration. When the
    connection is lost the iterator raises ``Unavailable``.
    """

    __slots__ = ("_closed", "_hub", "_items", "_key", "_waiter", "channel")

    def __init__(self, hub: _PubSubHub, channel: str, key: bytes) -> None:
        self.channel, self._key = channel, key
        self._hub: _PubSubHub | None = hub
        # Allocated on first use: an idle subscription stays small.
        self._items: deque[bytes | BaseException | None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def _offer(self, item: bytes | BaseException | None) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        if len(items) >= _QUEUE_DEPTH:
            items.popleft()
        items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _lost(self, error: BaseException) -> None:
        """The connection is gone: end iteration with ``error``."""
        self._hub = None
        self._offer(error)

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            items = self._items
            if not items:
                waiter = self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    self._waiter = None
                continue
            item = items.popleft()
            if item is None:
                items.appendleft(None)  # every later iteration ends as well
                return
            if isinstance(item, BaseException):
                items.appendleft(item)
                raise item
            yield item

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        hub, self._hub = self._hub, None
        try:
            if hub is not None:
                unsubscribed = hub.detach(self)
                if unsubscribed is not None:
                    with contextlib.suppress(Unavailable):
                        await hub.wait(unsubscribed)
        finally:
            self._offer(None)


class _Channel:
    """What the hub knows of one channel: its local subscribers, whether the last
    command it queued for the channel was SUBSCRIBE (``wanted``), the confirmation of
    that SUBSCRIBE, and the confirmations still due for the channel in command order
    (each resolves to None, or to the reason the connection failed)."""

    __slots__ = ("confirmed", "pending", "subs", "wanted")

    def __init__(self) -> None:
        self.subs: set[RedisSubscription] = set()
        self.wanted = False
        self.confirmed: asyncio.Future[str | None] | None = None
        self.pending: list[asyncio.Future[str | None]] = []  # rarely more than one


class _PubSubHub:
    """One Pub/Sub connection multiplexed to every subscription of a store.

    Two tasks own the connection: the reader (the only one reading replies) and the
    writer (the only one sending: SUBSCRIBE/UNSUBSCRIBE batches and health PINGs). The
    connection runs RESP2 without retries, so a loss is never hidden by a silent
    reconnect: the hub dies, its subscribers get ``Unavailable`` and the store opens a
    new hub on the next ``subscribe``. Redis answers a channel's commands in the order
    they were sent, which is what ``_Channel.pending`` relies on.
    """

    def __init__(
        self,
        connection: AbstractConnection,
        health_check_interval: float,
        on_dead: Callable[[_PubSubHub], None],
    ) -> None:
        self._conn = connection
        self._interval = health_check_interval
        self._on_dead = on_dead
        self._channels: dict[bytes, _Channel] = {}
        self._ops: list[tuple[bytes, bytes]] = []  # (command, channel) not yet sent
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._last_read = self._loop.time()
        self._ping_sent: float | None = None
        self._reason: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def dead(self) -> bool:
        return self._reason is not None

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read(), name="redis-pubsub-read"),
            asyncio.create_task(self._write(), name="redis-pubsub-write"),
        ]

    # subscribers
    async def subscribe(self, channel: str) -> RedisSubscription:
        if self._reason is not None:
            raise Unavailable(f"redis: subscribe failed: {self._reason}")
        key = channel.encode()
        sub = RedisSubscription(self, channel, key)
        state = self._channels.get(key)
        if state is None:
            state = self._channels[key] = _Channel()
        state.subs.add(sub)
        if not state.wanted:
            state.wanted = True
            state.confirmed = self._queue(b"SUBSCRIBE", key, state)
        confirmed = state.confirmed
        assert confirmed is not None
        if confirmed.done() and confirmed.result() is None:
            return sub  # already subscribed: publish counts this process
        try:
            await self.wait(confirmed)
        except BaseException:
            sub._closed, sub._hub = True, None
            self.detach(sub)  # unsubscribes when it was the last one, without waiting
            raise
        return sub

    def detach(self, sub: RedisSubscription) -> asyncio.Future[str | None] | None:
        """Remove a local subscriber; returns the UNSUBSCRIBE confirmation to wait for
        when it was the channel's last one."""
        state = self._channels.get(sub._key)
        if state is None or sub not in state.subs:
            return None
        state.subs.discard(sub)
        if state.subs or self._reason is not None:
            return None
        state.wanted, state.confirmed = False, None
        return self._queue(b"UNSUBSCRIBE", sub._key, state)

    async def wait(self, confirmation: asyncio.Future[str | None]) -> None:
        """Wait for a confirmation (shared by several waiters, hence the shield)."""
        try:
            async with asyncio.timeout(_CONFIRM_TIMEOUT):
                failed = await asyncio.shield(confirmation)
        except TimeoutError:
            raise Unavailable(
                f"redis: pub/sub confirmation not received within {_CONFIRM_TIMEOUT} s"
            ) from None
        if failed is not None:
            raise Unavailable(f"redis: subscribe failed: {failed}")

    def _queue(self, command: bytes, key: bytes, state: _Channel) -> asyncio.Future[str | None]:
        confirmation: asyncio.Future[str | None] = self._loop.create_future()
        state.pending.append(confirmation)
        self._ops.append((command, key))
        self._wake.set()
        return confirmation

    # the connection's two tasks
    async def _read(self) -> None:
        try:
            while True:
                reply = await self._conn.read_response(timeout=math.inf, disconnect_on_error=False)
                self._last_read = self._loop.time()
                self._dispatch(reply)
        except ResponseError as exc:
            await self._fail(f"error reply on the pub/sub connection: {exc}")
        except Exception as exc:  # RedisError, OSError; anything else must not hang us
            await self._fail(str(exc) or type(exc).__name__)

    def _dispatch(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) != 3:
            return  # a PING answer: [b"pong", b""] (or b"PONG" when not subscribed)
        kind, key, payload = reply
        if kind == b"message":
            state = self._channels.get(key)
            if state is not None:
                for sub in state.subs:
                    sub._offer(payload)
        elif kind in (b"subscribe", b"unsubscribe"):
            state = self._channels.get(key)
            if state is None or not state.pending:
                return
            confirmation = state.pending.pop(0)
            if not confirmation.done():
                confirmation.set_result(None)
            if not state.subs and not state.pending and not state.wanted:
                del self._channels[key]

    async def _write(self) -> None:
        next_check = self._loop.time() + self._interval
        try:
            while True:
                if not self._wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(next_check):
                            await self._wake.wait()
                    # Let the other subscribers woken in this round queue theirs too.
                    await asyncio.sleep(0)
                if self._loop.time() >= next_check:
                    await self._check_health()
                    next_check = self._loop.time() + self._interval
                if self._wake.is_set():
                    self._wake.clear()
                    ops, self._ops = self._ops, []
                    if ops:
                        await self._send(_batched(ops))
        except Exception as exc:  # RedisError, OSError; anything else must not hang us
            await self._fail(str(exc) or type(exc).__name__)

    async def _check_health(self) -> None:
        # Nothing read since the PING is a dead connection, unless bytes wait unread in
        # the stream's buffer (the event loop was busy; it feeds the buffer before it
        # runs timers): then only the reader is late.
        if (
            self._ping_sent is not None
            and self._last_read < self._ping_sent
            and not await self._conn.can_read()
        ):
            raise RedisConnectionError(f"no answer to PING within {self._interval} s")
        self._ping_sent = None
        if self._loop.time() - self._last_read >= self._interval:
            self._ping_sent = self._loop.time()
            await self._send([(b"PING",)])

    async def _send(self, commands: list[tuple[bytes, ...]]) -> None:
        if not self._conn.is_connected:  # never let redis-py reconnect silently
            raise RedisConnectionError("pub/sub connection closed")
        await self._conn.send_packed_command(self._conn.pack_commands(commands), check_health=False)

    # the end
    def _end(self, reason: str, error: str | None) -> None:
        """Mark the hub dead and end every subscription (with ``Unavailable(error)``,
        if given)."""
        if self._reason is not None:
            return
        self._reason = reason
        for state in self._channels.values():
            for confirmation in state.pending:
                if not confirmation.done():
                    confirmation.set_result(reason)
            for sub in state.subs:
                if error is not None:
                    sub._lost(Unavailable(error))
                else:
                    sub._hub = None
                    sub._offer(None)
        self._channels.clear()
        self._ops.clear()
        self._on_dead(self)

    async def _fail(self, reason: str) -> None:
        """Called by one of the two tasks: the connection is lost."""
        self._end(reason, f"redis: pub/sub connection lost: {reason}")
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self._conn.disconnect(nowait=True)

    async def close(self) -> None:
        """Close the connection; subscriptions end (without error)."""
        self._end("the store was closed", None)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self._conn.disconnect(nowait=True)


def _batched(ops: list[tuple[bytes, bytes]]) -> list[tuple[bytes, ...]]:
    """Consecutive same commands joined into one (so each channel's order is kept)."""
    commands: list[tuple[bytes, ...]] = []
    command: bytes | None = None
    channels: list[bytes] = []
    for op, key in ops:
        if op != command or len(channels) >= _MAX_CHANNELS_PER_COMMAND:
            if command is not None and channels:
                commands.append((command, *channels))
            command, channels = op, []
        channels.append(key)
    if command is not None and channels:
        commands.append((command, *channels))
    return commands


class RedisPresenceStore:
    def __init__(self, client: aioredis.Redis, *, prefix: str = "tidings:") -> None:
        self._redis = client
        self.prefix = prefix
        self._take_token = client.register_script(_TAKE_TOKEN_LUA)
        self._incr = client.register_script(_INCR_LUA)
        self._reap = client.register_script(_REAP_LUA)
        self._hub: _PubSubHub | None = None
        self._hub_opening: asyncio.Future[_PubSubHub] | None = None
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tidings:",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> RedisPresenceStore:
        """``redis://host:port/db`` (see redis-py's ``from_url`` for the options).

        Commands use a blocking pool of ``max_connections`` (a ``?max_connections=`` in
        the URL wins) that waits ``pool_timeout`` seconds (``?timeout=`` wins) for a
        free connection; Pub/Sub uses one more connection of its own.
        """
        pool = _BoundedPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            client_name=_client_name(prefix, "cmd"),
        )
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix)

    # keys
    def _device_key(self, user_id: str, device_id: int) -> str:
        return f"{self.prefix}presence:{user_id}:{device_id}"

    def _devices_key(self, user_id: str) -> str:
        return f"{self.prefix}presence-devices:{user_id}"

    @property
    def _last_seen_key(self) -> str:
        return f"{self.prefix}last-seen"

    @property
    def _expiry_key(self) -> str:
        return f"{self.prefix}presence-expiry"

    def _kv(self, key: str) -> str:
        return f"{self.prefix}kv:{key}"

    # presence
    async def set_online(self, user_id: str, device_id: int, ttl: float) -> None:
        ms = _ms(ttl)
        devices = self._devices_key(user_id)
        with _translated("set_online"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._device_key(user_id, device_id), b"1", px=ms)
                pipe.sadd(devices, str(device_id))
                pipe.pexpire(devices, ms, nx=True)  # the index lives as long as the
                pipe.pexpire(devices, ms, gt=True)  # longest-lived device key
                pipe.zadd(self._expiry_key, {f"{user_id}\n{device_id}": time.time() + ttl})
                await pipe.execute()

    async def set_offline(self, user_id: str, device_id: int, now: float) -> None:
        with _translated("set_offline"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._device_key(user_id, device_id))
                pipe.srem(self._devices_key(user_id), str(device_id))
                pipe.hset(self._last_seen_key, user_id, repr(now))
                pipe.zrem(self._expiry_key, f"{user_id}\n{device_id}")
                await pipe.execute()

    async def reap_expired(self, now: float, limit: int) -> list[tuple[str, int]]:
        keys = [self._expiry_key, self._last_seen_key]
        with _translated("reap_expired"):
            members = await self._reap(
                keys=keys, args=[repr(now), limit, f"{self.prefix}presence-devices:"]
            )
        out: list[tuple[str, int]] = []
        for member in members:
            user_id, _, device = bytes(member).decode().partition("\n")
            out.append((user_id, int(device)))
        return out

    async def get_presence(self, user_ids: Sequence[str]) -> list[Presence]:
        if not user_ids:
            return []
        with _translated("get_presence"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.smembers(self._devices_key(user_id))
                pipe.hmget(self._last_seen_key, list(user_ids))
                *device_sets, last_seen = await pipe.execute()
            checks: list[tuple[int, str]] = [
                (index, self._device_key(user_id, int(device)))
                for index, (user_id, devices) in enumerate(zip(user_ids, device_sets, strict=True))
                for device in devices
            ]
            online: set[int] = set()
            if checks:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for _, key in checks:
                        pipe.exists(key)
                    found = await pipe.execute()
                online = {index for (index, _), n in zip(checks, found, strict=True) if n}
        return [
            Presence(user_id, index in online, float(seen) if seen is not None else None)
            for index, (user_id, seen) in enumerate(zip(user_ids, last_seen, strict=True))
        ]

    # channels
    async def publish(self, channel: str, message: bytes) -> int:
        with _translated("publish"):
            return int(await self._redis.publish(self.prefix + channel, message))

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> list[int]:
        """Every PUBLISH in one pipeline (one round trip); the counts in order."""
        if not messages:
            return []
        with _translated("publish"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel, message in messages:
                    pipe.publish(self.prefix + channel, message)
                return [int(n) for n in await pipe.execute()]

    async def subscribe(self, channel: str) -> RedisSubscription:
        """Subscribe on the store's shared Pub/Sub connection; once this returns, a
        ``publish`` to ``channel`` from any process counts this one."""
        hub = self._hub
        if hub is None or hub.dead:
            hub = await self._open_hub()
        return await hub.subscribe(self.prefix + channel)

    async def _open_hub(self) -> _PubSubHub:
        """The live hub, connecting one if needed; concurrent callers share the attempt
        (and are all released together, so their SUBSCRIBEs go out as one batch)."""
        opening = self._hub_opening
        if opening is None:
            opening = self._hub_opening = asyncio.ensure_future(self._connect_hub())
            opening.add_done_callback(_retrieve)
        return await asyncio.shield(opening)

    async def _connect_hub(self) -> _PubSubHub:
        try:
            if self._closed:
                raise Unavailable("redis: subscribe failed: the store is closed")
            pool = self._redis.connection_pool
            kwargs = dict(pool.connection_kwargs)
            interval = float(kwargs.pop("health_check_interval", 0) or 0)
            for key in (
                "maint_notifications_config",
                "maint_notifications_pool_handler",
                "orig_host_address",
                "orig_socket_timeout",
                "orig_socket_connect_timeout",
                "retry_on_error",
            ):
                kwargs.pop(key, None)
            kwargs.update(
                client_name=_client_name(self.prefix, "pubsub"),
                protocol=2,  # replies as plain arrays; no RESP3 push handling needed
                decode_responses=False,
                health_check_interval=0,  # our own PINGs; redis-py's would eat a reply
                retry=Retry(NoBackoff(), 0),  # a lost connection must not come back silently
                retry_on_timeout=False,
                socket_timeout=kwargs.get("socket_timeout") or _CONFIRM_TIMEOUT,
            )
            connection: AbstractConnection = pool.connection_class(**kwargs)
            with _translated("subscribe"):
                await connection.connect()  # type: ignore[no-untyped-call]
            hub = _PubSubHub(connection, interval or DEFAULT_HEALTH_CHECK_INTERVAL, self._hub_died)
            hub.start()
            if self._closed:
                await hub.close()
                raise Unavailable("redis: subscribe failed: the store is closed")
            self._hub = hub
            return hub
        finally:
            self._hub_opening = None

    def _hub_died(self, hub: _PubSubHub) -> None:
        if self._hub is hub:
            self._hub = None

    # rate limits
    async def take_token(self, key: str, limit: Limit, now: float, cost: float = 1.0) -> Decision:
        idle = idle_expiry(limit)
        args = [repr(float(limit.rate)), str(limit.burst), repr(now), repr(float(cost))]
        # The key's own PX (real time) only reclaims memory: the script decides with
        # ``expires`` (caller time), like the in-memory engine; a second of slack keeps
        # the key at least that long.
        args += [repr(idle), str(_ms(idle) + 1000)]
        with _translated("take_token"):
            allowed, wait = await self._take_token(keys=[f"{self.prefix}bucket:{key}"], args=args)
        return Decision(bool(allowed), float(wait))

    # TTL keys
    async def put_if_absent(self, key: str, value: bytes, ttl: float) -> bytes | None:
        with _translated("put_if_absent"):
            # SET NX GET (Redis >= 7.0): sets unless present, answers the existing value.
            existing = await self._redis.set(self._kv(key), value, px=_ms(ttl), nx=True, get=True)
        return _as_bytes(existing)

    async def put_many_if_absent(
        self, items: Sequence[tuple[str, bytes, float]]
    ) -> list[bytes | None]:
        """One pipeline of SET NX GET (each atomic on its own); answers in order."""
        if not items:
            return []
        with _translated("put_if_absent"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value, ttl in items:
                    pipe.set(self._kv(key), value, px=_ms(ttl), nx=True, get=True)
                replies = await pipe.execute()
        return [_as_bytes(reply) for reply in replies]

    async def get(self, key: str) -> bytes | None:
        with _translated("get"):
            value = await self._redis.get(self._kv(key))
        return _as_bytes(value)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        with _translated("set"):
            await self._redis.set(self._kv(key), value, px=_ms(ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Every SET in one pipeline (one round trip)."""
        if not items:
            return
        with _translated("set"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value, ttl in items:
                    pipe.set(self._kv(key), value, px=_ms(ttl))
                await pipe.execute()

    async def delete(self, key: str) -> None:
        with _translated("delete"):
            await self._redis.delete(self._kv(key))

    async def incr(self, key: str, ttl: float) -> int:
        with _translated("incr"):
            return int(await self._incr(keys=[self._kv(key)], args=[_ms(ttl)]))

    async def ping(self) -> None:
        with _translated("ping"):
            await self._redis.ping()

    async def close(self) -> None:
        """Ends every subscription, closes the Pub/Sub connection and the pool."""
        self._closed = True
        hub, self._hub = self._hub, None
        if hub is not None:
            await hub.close()
        with _translated("close"):
            await self._redis.aclose()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared future's exception retrieved (its waiters may all be gone)."""
    if not future.cancelled():
        future.exception()
