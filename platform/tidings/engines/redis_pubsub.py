"""The Pub/Sub side of the Redis engine (``tidings.engines.redis``): device channels.

Pub/Sub takes ONE connection per store (per process), named ``<prefix>pubsub``,
outside the command pool, multiplexed to every subscription: a reader task dispatches
each message to the local subscribers of its channel (each gets a copy in its own
bounded queue; the oldest is dropped when a consumer falls behind). The first local
subscriber of a channel SUBSCRIBEs it and the last one to close UNSUBSCRIBEs it, each
waiting for the server's confirmation; commands that arrive together (a connect storm)
go out as one SUBSCRIBE/UNSUBSCRIBE with many channels in one write, and each waiter is
released by its own channel's confirmation. A silent connection is found by a PING
after ``health_check_interval`` seconds without traffic (default 10;
``?health_check_interval=S`` in the URL) that gets no answer within as long again.

Because Redis counts one receiver per subscribed connection, ``publish`` returns how
many *stores* (processes) hold a live subscription on the channel, not how many
sockets: 0 still means nobody, anywhere, is subscribed (the device is offline). When
the Pub/Sub connection is lost (Redis restarted, the client killed, no PING answer)
every live subscription ends with ``Unavailable`` from its iterator and the next
``subscribe`` opens a fresh connection. (``translated`` and ``client_name`` are shared.)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from tidings.errors import Unavailable

_QUEUE_DEPTH = 1024
_CONFIRM_TIMEOUT = 5.0
DEFAULT_HEALTH_CHECK_INTERVAL = 10.0
"""Seconds of Pub/Sub silence before a PING (``health_check_interval`` in the URL)."""
_MAX_CHANNELS_PER_COMMAND = 1000


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Driver errors (and OS errors) raised as ``tidings.errors.Unavailable``."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(f"redis: {what} failed: {exc}") from exc


def client_name(prefix: str, role: str) -> str:
    """A CLIENT SETNAME value: printable ASCII without spaces, as Redis requires."""
    return "".join(c if "!" <= c <= "~" else "_" for c in f"{prefix}{role}")


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

    def __init__(self, hub: PubSubHub, channel: str, key: bytes) -> None:
        self.channel, self._key = channel, key
        self._hub: PubSubHub | None = hub
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


class PubSubHub:
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
        on_dead: Callable[[PubSubHub], None],
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

    @classmethod
    async def connect(
        cls,
        pool: aioredis.ConnectionPool,
        prefix: str,
        on_dead: Callable[[PubSubHub], None],
    ) -> PubSubHub:
        """Open a connection to ``pool``'s server with the pool's options (but RESP2, no
        retries and our own PINGs) and start a hub on it."""
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
            client_name=client_name(prefix, "pubsub"),
            protocol=2,  # replies as plain arrays; no RESP3 push handling needed
            decode_responses=False,
            health_check_interval=0,  # our own PINGs; redis-py's would eat a reply
            retry=Retry(NoBackoff(), 0),  # a lost connection must not come back silently
            retry_on_timeout=False,
            socket_timeout=kwargs.get("socket_timeout") or _CONFIRM_TIMEOUT,
        )
        connection: AbstractConnection = pool.connection_class(**kwargs)
        with translated("subscribe"):
            await connection.connect()  # type: ignore[no-untyped-call]
        hub = cls(connection, interval or DEFAULT_HEALTH_CHECK_INTERVAL, on_dead)
        hub.start()
        return hub

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
