"""The gateway's per-socket loop around the sans-I/O ``core.wsproto.Session``.

Four tasks per socket: read frames, pump the inbox into the delivery window, listen on
the device channel (wake-ups, ephemeral events, kicks), and watch heartbeats. The pump
never waits on a slow client beyond its own window, so one client cannot hold up others.

The reader never waits for a request to be answered: frames queue up while the previous
ones are handled, and a short-lived worker takes whatever has queued in one go, in read
order (a run of sends is one router batch, a run of acks one inbox write and one receipt
per sender). A busy socket thus costs a round trip per batch, not per frame, answers
come in request order, and its pings are read while a slow send is still in flight.

Acks do not hold up the sends behind them: they are recorded beside the worker
(``gateway_acks``), and only what must follow them waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from tidings.aio import Flag
from tidings.core import jsoncodec, wsproto
from tidings.core.envelopes import Envelope
from tidings.core.limits import INBOX_POLL_INTERVAL_S
from tidings.core.model import InboxItem
from tidings.errors import TidingsError
from tidings.services.context import Context, Principal, device_channel
from tidings.services.frame_limits import ReadPacer
from tidings.services.gateway_acks import AckRecorder
from tidings.services.presence import publish_presence
from tidings.services.presence_following import PresenceFollowing
from tidings.services.router import Router
from tidings.services.users import UserService

log = logging.getLogger("tidings.gateway")

CONNECT_SETUPS_AT_ONCE = 256
"""Sockets of one gateway setting up at once (authenticate, kick the device's older
socket, subscribe, go online); the rest of a connect storm waits its turn, holding
nothing but its socket. A set-up is a few round trips that share requests with the
set-ups of the same moment (one Cassandra read for many sessions, one Redis pipeline
for many presence updates), so a storm's throughput grows with this bound: 32 held a
storm of 2,000 to about 500 connects/s on 2 cores with the gateway half idle, 256 lets
it reach the CPU. It stays bounded so a storm cannot queue unbounded work behind the
stores."""

_background: set[asyncio.Future[None]] = set()
"""Ack work outlives its socket; held here so it is not garbage-collected."""


def _outliving_the_socket(work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
    """Start ``work`` apart from the socket: one torn down mid-way must not record acks
    and then drop their receipts (the acked messages would never be receipted)."""
    future = asyncio.ensure_future(work)
    _background.add(future)
    future.add_done_callback(_settled)
    return future


def _settled(work: asyncio.Future[None]) -> None:
    """Forget finished background work; its error was already raised to the socket, or
    the socket was gone (nothing left to tell)."""
    _background.discard(work)
    if not work.cancelled():
        work.exception()


class Disconnected(Exception):
    """The client went away."""


class Transport(Protocol):
    async def receive_text(self) -> str:
        """Next text frame; raises ``Disconnected`` when the socket closed."""

    async def send_text(self, text: str) -> None: ...
    async def close(self, code: int, reason: str) -> None: ...


RequestHandler = Callable[[list[wsproto.Request], "SocketSession"], Awaitable[list[str]]]
"""Answers a batch of requests, one response frame each, in order."""

FRAMES_PER_TURN = 64
"""Frames of one socket handled in one go. Answering frames refused by a budget awaits
nothing, so a flooding socket's backlog handled at once held the event loop for every
other socket meanwhile; past this many the worker lets the others run first."""
MAX_QUEUED_REQUESTS = 256
"""Requests read but not yet handled; past this the reader stops reading (back-pressure
on the client's TCP connection) until the handler catches up."""

AFTER_ACKS = frozenset({"ping", "receipt"})
"""Requests that wait for the acks read before them to be recorded: a ping's answer
says they were, and a read receipt must follow the ``delivered`` receipt of its acks."""

FINISH_QUEUED_S = 2.0
"""How long a closing socket waits for the frames it already read to be handled."""


def kick_message(reason: str, conn: str | None = None) -> bytes:
    return json.dumps({"t": "kick", "reason": reason, "conn": conn}).encode()


class SocketSession:
    def __init__(
        self,
        ctx: Context,
        router: Router,
        users: UserService,
        principal: Principal,
        transport: Transport,
        handler: RequestHandler,
        poll_interval: float = INBOX_POLL_INTERVAL_S,
    ) -> None:
        self.ctx, self.router, self.users = ctx, router, users
        self.principal, self.transport, self.handler = principal, transport, handler
        self.poll_interval = poll_interval
        self.proto = wsproto.Session(
            max_in_flight=ctx.limits.max_in_flight, max_frame_chars=ctx.limits.envelope_bytes
        )
        self.conn_id = uuid.uuid4().hex
        self._online_since_ms = ctx.now_ms()
        self._wake = Flag()
        self._send_lock = asyncio.Lock()
        self._close: tuple[int, str] | None = None
        self._last_frame = self._polled_at = ctx.clock()
        self._queued: list[wsproto.Request | wsproto.FrameRejected | wsproto.Acked] = []
        self._worker: asyncio.Task[None] | None = None
        self.acks = AckRecorder(self._acked, self._start_ack_loop)
        self._cursors: dict[str, str] = {}
        """Inbox cursor of each delivery in flight (handed to the store with its ack)."""
        self._refused = False
        """A delivery was refused (status >= 300): the cursor must never go back."""
        self._room = Flag()
        self._room.set()
        self._read_it_all = False
        """The pump's last read started at the inbox's start and found less than it could
        take: every row it did not deliver came later, and woke the pump (a wake during
        the read sends it round again). Acks then need not send it round for more."""
        self._ended: asyncio.Future[None] | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self.following = PresenceFollowing(ctx, users, principal, self.send)
        self.pacer = ReadPacer()
        """Paces reading when the client floods past its rate limits (``ReadPacer``)."""
        self.queue_empty_sent = False
        self._map = ctx.shard_map
        """The shard map the account's region was last checked against."""

    @property
    def channel(self) -> str:
        return device_channel(self.principal.user_id, self.principal.device_id)

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self.transport.send_text(text)

    async def run(self, setup_gate: asyncio.Semaphore | None = None) -> None:
        """Serve the socket until it ends; its set-up waits for ``setup_gate``."""
        ctx, me = self.ctx, self.principal
        async with setup_gate or contextlib.nullcontext():
            # The kick goes before the subscription: of two sockets of a device
            # connecting at once, the later one stays.
            await ctx.channels.publish(self.channel, kick_message("elsewhere", self.conn_id))
            subscription = await ctx.channels.subscribe(self.channel)
            try:
                await self._set_online(True)
            except BaseException:
                await subscription.close()
                raise
        ctx.metrics.ws_connections.inc()
        # The socket ends when any of its tasks ends (or the heartbeat check fails): each
        # reports to one future, which costs less per idle socket than asyncio.wait.
        ended = self._ended = asyncio.get_running_loop().create_future()
        tasks = [
            asyncio.create_task(self._read(), name="ws-read"),
            asyncio.create_task(self._pump(), name="ws-pump"),
            asyncio.create_task(self._listen(subscription), name="ws-listen"),
        ]
        for task in tasks:
            task.add_done_callback(self._task_ended)
        self._arm_heartbeat()
        try:
            await ended
        except Disconnected:
            pass
        except Exception as exc:
            log.error("socket of %s/%s failed", me.user_id, me.device_id, exc_info=exc)
            self._close = self._close or (1011, "internal error; reconnect")
        finally:
            if self._heartbeat is not None:
                self._heartbeat.cancel()
            await self._finish_queued()
            everything = [*tasks, *self.following.tasks]
            everything += [self._worker] if self._worker is not None else []
            # (the acks' loop outlives the socket, see _outliving_the_socket)
            for task in everything:
                task.cancel()
            await asyncio.gather(*everything, return_exceptions=True)
            await subscription.close()
            if self._close is None or self._close[0] != wsproto.CLOSE_CONNECTED_ELSEWHERE:
                await self._set_online(False)  # a replacing socket keeps the device online
            ctx.metrics.ws_connections.dec()
            if self._close is not None:
                with contextlib.suppress(Exception):
                    await self.transport.close(*self._close)

    async def _set_online(self, online: bool) -> None:
        ctx, me = self.ctx, self.principal
        if online:
            presence = await ctx.presence.set_online(
                me.user_id, me.device_id, ctx.limits.heartbeat_timeout_s * 2
            )
        else:
            presence = await ctx.presence.set_offline(me.user_id, me.device_id, ctx.clock())
        await publish_presence(ctx, presence)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if pause := self.pacer.pause(loop.time()):
                self.ctx.metrics.ws_read_paused.inc(pause)
                await asyncio.sleep(pause)
            text = await self.transport.receive_text()
            self._last_frame = self.ctx.clock()
            event = self.proto.receive(text)
            if isinstance(event, wsproto.Nacked):
                self._cursors.pop(event.server_id, None)
                self._refused = True  # it stays queued for the next connection
                self._wake.set()
                continue
            self._queued.append(event)
            if self._worker is None or self._worker.done():
                # The worker exits as soon as it finds the queue empty, in the same step
                # as that check, so nothing queued is ever stranded.
                self._worker = asyncio.create_task(self._guarded())
            if len(self._queued) >= MAX_QUEUED_REQUESTS:
                self._room.clear()
                await self._room.wait()

    @property
    def busy(self) -> bool:
        """Frames are being handled or acks recorded: silence from the client is not
        idleness then, and the inbox's start may still hold acked rows."""
        return (self._worker is not None and not self._worker.done()) or self.acks.busy

    async def _guarded(self) -> None:
        """The worker: a failure ends the socket the way a failed socket task does."""
        try:
            await self._drain()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._end(exc)
        finally:
            self._last_frame = self.ctx.clock()

    async def _drain(self) -> None:
        """Handle what has queued, in read order: each run of acks is one inbox write,
        each run of requests one handler batch (its sends one router batch). So a ping
        is answered only after the acks read before it are recorded."""
        while self._queued:
            batch = self._queued[:FRAMES_PER_TURN]
            del self._queued[:FRAMES_PER_TURN]
            self._room.set()
            start = 0
            while start < len(batch):
                acks = isinstance(batch[start], wsproto.Acked)
                end = start
                while end < len(batch) and isinstance(batch[end], wsproto.Acked) == acks:
                    end += 1
                if acks:
                    self.acks.add(
                        [e.server_id for e in batch[start:end] if isinstance(e, wsproto.Acked)]
                    )
                else:
                    requests = [e for e in batch[start:end] if not isinstance(e, wsproto.Acked)]
                    after = {e.type for e in requests if isinstance(e, wsproto.Request)}
                    if after & AFTER_ACKS:
                        await self.acks.recorded_so_far()
                    if "receipt" in after:  # it must follow the delivered receipts held
                        await self.router.receipts.flushed()
                    for answer in await self._answer(requests):
                        await self.send(answer)
                start = end
            if self._queued:
                await asyncio.sleep(0)  # the other sockets' turn before the rest of ours

    def _start_ack_loop(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        loop = _outliving_the_socket(work)
        loop.add_done_callback(self._ack_loop_ended)
        return loop

    def _ack_loop_ended(self, work: asyncio.Future[None]) -> None:
        """Acks that failed for good end the socket, as a failed frame does."""
        self._last_frame = self.ctx.clock()
        if not work.cancelled() and work.exception() is not None:
            self._end(work.exception())

    async def _finish_queued(self) -> None:
        """A client that acks and then goes away had its acks read: record them (briefly
        bounded) rather than deliver those messages again next time."""
        for work in (self._worker, self.acks.loop):
            if work is None or work.done():
                continue
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(work), FINISH_QUEUED_S)

    async def _answer(self, batch: list[wsproto.Request | wsproto.FrameRejected]) -> list[str]:
        """One answer per frame, in order; runs of requests go to the handler together."""
        answers: list[str] = []
        run: list[wsproto.Request] = []
        for event in batch:
            if isinstance(event, wsproto.Request):
                run.append(event)
                continue
            if run:
                answers += await self.handler(run, self)
                run = []
            self.ctx.metrics.ws_frames_rejected.labels(str(event.status)).inc()
            answers.append(wsproto.error(event.id, event.status, "bad_frame", event.message))
        if run:
            answers += await self.handler(run, self)
        return answers

    async def heartbeat(self) -> None:
        me = self.principal
        await self.ctx.presence.set_online(
            me.user_id, me.device_id, self.ctx.limits.heartbeat_timeout_s * 2
        )

    async def _acked(self, server_ids: list[str]) -> None:
        """Record the acks in one inbox write, then hand the messages to the router's
        held ``delivered`` receipts (``delivered_receipts``: one per original sender,
        produced within ``Limits.receipt_hold_s``).

        An engine outage must not cost the socket: an ack that cannot be recorded leaves
        the message pending (delivered again on the next connection, clients dedupe),
        and receipts keep retrying after the socket is gone."""
        me, ctx = self.principal, self.ctx
        started_ns = time.time_ns()  # the start of a traced message's ack span
        ctx.metrics.ack_batch_size.observe(len(server_ids))
        try:
            cursors = {sid: c for sid in server_ids if (c := self._cursors.pop(sid, None))}
            acked = await ctx.messages.ack(me.user_id, me.device_id, server_ids, cursors)
        except TidingsError as exc:
            if not exc.retryable:
                raise
            ctx.metrics.acks_unrecorded.inc(len(server_ids))
            log.warning(
                "%d acks by %s/%s not recorded: %s",
                len(server_ids),
                me.user_id,
                me.device_id,
                exc.message,
            )
            return
        if not self._read_it_all:
            self._wake.set()  # room for more, or rows the last read may have passed
        if not acked:
            return
        ctx.metrics.deliveries_acked.inc(len(acked))
        now = ctx.now_ms()
        envelopes = [Envelope.decode(item.envelope) for item in acked]
        ctx.tracing.acked(envelopes, started_ns)
        for envelope in envelopes:
            ctx.emit("delivered", envelope.kind.value, latency_ms=max(0, now - envelope.timestamp))
        self.router.receipts.add(me, envelopes)

    async def _fetch(self, cursor: str | None, want: int) -> list[InboxItem]:
        """The next inbox items; an engine outage pauses the pump instead of the socket."""
        me = self.principal
        while True:
            try:
                return await self.ctx.messages.fetch(me.user_id, me.device_id, cursor, want)
            except TidingsError as exc:
                if not exc.retryable:
                    raise
                log.warning(
                    "inbox of %s/%s unreadable, retrying: %s", me.user_id, me.device_id, exc.message
                )
                await asyncio.sleep(1.0)

    async def _pump(self) -> None:
        cursor: str | None = None
        while True:
            # Cleared before reading, never after: a wake-up that comes while a fetch is
            # under way must send the pump round again, not wait for the next poll.
            self._wake.clear()
            while self.proto.room > 0:
                if not self.proto.in_flight and not self.busy and not self._refused:
                    # Everything delivered is acked and recorded: read from the inbox's
                    # start again (cheap: acked rows are gone), so a row that a delivery
                    # worker in another process appended behind the cursor is not missed.
                    cursor = None
                want = self.proto.room
                from_start = cursor is None
                self._read_it_all = False
                items = await self._fetch(cursor, want)
                self._read_it_all = from_start and len(items) < want
                for item in items:
                    envelope = Envelope.decode(item.envelope)
                    self._cursors[item.server_id] = item.cursor
                    if envelope.timestamp >= self._online_since_ms:
                        # Accept-to-deliver, the latency SLO: sends accepted while this
                        # device was connected; an offline backlog's wait is not ours.
                        self.ctx.metrics.delivery_latency.observe(
                            max(0, self.ctx.now_ms() - envelope.timestamp) / 1000
                        )
                    span = self.ctx.tracing.deliver_span(envelope) if envelope.trace else None
                    await self.send(self.proto.deliver(item.server_id, envelope.to_client()))
                    if span is not None:
                        span.end()
                    self.ctx.metrics.deliveries_sent.inc()
                    cursor = item.cursor
                if len(items) < want:
                    if not self.queue_empty_sent:
                        self.queue_empty_sent = True
                        await self.send(wsproto.event("queue-empty"))
                    break
            await self._wake.wait()
            self._polled_at = self.ctx.clock()

    async def _listen(self, subscription: Any) -> None:
        async for raw in subscription:
            message = jsoncodec.loads(raw)
            kind = message.get("t")
            if kind == "wake":
                self._wake.set()
            elif kind == "event":
                envelope = message["envelope"]
                await self.send(wsproto.event(envelope["type"], envelope))
            elif kind == "kick" and message.get("conn") != self.conn_id:
                if message.get("reason") == "elsewhere":
                    self._close = (wsproto.CLOSE_CONNECTED_ELSEWHERE, "connected elsewhere")
                else:
                    self._close = (wsproto.CLOSE_UNAUTHORIZED, "session revoked; sign in again")
                return

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        self._end(None if task.cancelled() else task.exception())

    def _end(self, exc: BaseException | None = None) -> None:
        """End the socket (the first call wins): cleanly when ``exc`` is None or the
        client went away, otherwise as a failure (logged, closed with 1011)."""
        ended = self._ended
        if ended is None or ended.done():
            return
        if exc is None or isinstance(exc, Disconnected):
            ended.set_result(None)
        else:
            ended.set_exception(exc)

    def _arm_heartbeat(self) -> None:
        """Check for silence, and whether the inbox is due a poll, every few seconds
        with one timer (no task, and no second timer for the poll, per socket)."""
        every = min(5.0, self.ctx.limits.heartbeat_timeout_s / 3, self.poll_interval)
        self._heartbeat = asyncio.get_running_loop().call_later(every, self._check_heartbeat)

    def _check_heartbeat(self) -> None:
        timeout = self.ctx.limits.heartbeat_timeout_s
        now = self.ctx.clock()
        if not self.busy and now - self._last_frame > timeout:
            self._close = (wsproto.CLOSE_HEARTBEAT_TIMEOUT, f"no frame for {timeout:.0f}s")
            self._end()
            return
        if (region := self._moved_to()) is not None:
            self._close = (
                wsproto.CLOSE_SERVED_ELSEWHERE,
                f"served by region {region} now: reconnect where GET /v1/regions/mine says",
            )
            self._end()
            return
        if now - self._polled_at >= self.poll_interval:
            self._wake.set()  # a wake-up that never came: read the inbox anyway
        self._arm_heartbeat()

    def _moved_to(self) -> str | None:
        """The region the account's shard moved to since the last check, when that is
        another region's with a published gateway: its delivery workers wake sockets
        there, so this one would hear of new messages only by polling. Looked at only
        when the map changed (an object compared, not a hash per socket and tick)."""
        before, now = self._map, self.ctx.shard_map
        if now is before:
            return None
        self._map = now
        user = self.principal.user_id
        owner = now.owner_region(user)
        if owner == self.ctx.region or owner == before.owner_region(user):
            return None
        return owner if now.gateway_of(owner) is not None else None
