"""The device WebSocket served straight on the connection, on websockets' sans-I/O core.

uvicorn hands every WebSocket upgrade to the protocol class its config names; this one
serves ``/v1/ws`` without ASGI in between. Through ASGI each frame became a message
dict in an ``asyncio.Queue`` and each answer a dict through the middleware's ``send``,
one socket write apiece, and an idle socket kept the queue, the scope, its headers and
the ASGI coroutines alive (about 10 KiB). Here a received text frame goes to the
session's reader directly, the frames written in one event-loop turn leave in one
socket write, and an idle socket holds this object, the parser and the session.

``websockets.ServerProtocol`` does the protocol: the handshake, framing, masking, the
frame size limit (1009), answering pings, the closing handshake. This class moves bytes
and adds what uvicorn's did on top: a keepalive ping (close 1011 when unanswered),
back-pressure both ways, the 1012 close on shutdown, the 1007 close for text that is not
UTF-8. Any other upgrade path is refused with 404.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from tidings.api.deps import bearer_token
from tidings.api.ws import WS_PATH, serve_socket
from tidings.services.gateway import Disconnected

log = logging.getLogger("tidings.ws")
protocol_log = logging.getLogger("tidings.ws.protocol")
"""websockets' own lines: "connection open" and "connection closed" at INFO for every
socket (a line per connect was a twentieth of a connect storm's CPU, and noise at ten
thousand sockets; ``tidings_ws_connections`` counts them). WARNING unless configured:
set this logger to DEBUG to see every handshake and frame."""
if protocol_log.level == logging.NOTSET:
    protocol_log.setLevel(logging.WARNING)

READ_AHEAD = 32
"""Frames read but not yet taken by the session; past this, reading pauses (the
client's TCP window closes) until the session catches up."""
CLOSE_TIMEOUT_S = 10.0
"""How long a close frame we sent waits for the client's before the socket is dropped."""


class DirectWebSocket(asyncio.Protocol):
    """One ``/v1/ws`` connection (an ``asyncio.Protocol`` uvicorn switches to)."""

    __slots__ = (
        "_close_timer",
        "_closed",
        "_drained",
        "_flush_scheduled",
        "_fragments",
        "_frames",
        "_out",
        "_ping",
        "_ping_payload",
        "_pong_due",
        "_read_paused",
        "_reader",
        "app",
        "config",
        "conn",
        "connections",
        "loop",
        "tasks",
        "transport",
    )

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        if not config.loaded:
            config.load()
        self.config, self.app = config, config.app
        self.connections, self.tasks = server_state.connections, server_state.tasks
        self.loop: asyncio.AbstractEventLoop = _loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.conn = ServerProtocol(max_size=config.ws_max_size, logger=protocol_log)
        self._frames: list[str] = []  # at most READ_AHEAD: a deque's block is 0.5 KiB
        self._reader: asyncio.Future[None] | None = None
        self._read_paused = False
        self._fragments: list[bytes] | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._drained: asyncio.Future[None] | None = None
        self._closed = False
        self._ping: asyncio.TimerHandle | None = None
        self._pong_due: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
        if conn.close_sent is not None and not self._closed:
            # A close frame went out: ours, the answer to the client's, or the parser
            # failing the connection (1002, 1009).
            self._after_close()
        self._flush()

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.connections.discard(self)
        for timer in (self._ping, self._pong_due, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._wake_reader()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (reconnect; another gateway takes it)."""
        if self._handshaken() and self.conn.close_sent is None:
            self._send_close(1012, "the gateway is shutting down")
        else:
            self._abort()

    # the session's transport ----------------------------------------------------------
    async def receive_text(self) -> str:
        while not self._frames:
            if self._closed or self.conn.close_rcvd is not None or self.conn.close_sent is not None:
                raise Disconnected()
            self._reader = self.loop.create_future()
            await self._reader
        text = self._frames.pop(0)
        if self._read_paused and len(self._frames) < READ_AHEAD // 2:
            self._read_paused = False
            if self.transport is not None and not self._closed:
                self.transport.resume_reading()
        return text

    async def send_text(self, text: str) -> None:
        if self._closed or self.conn.close_sent is not None:
            raise Disconnected()
        self.conn.send_text(text.encode())
        self._queue_output()
        if self._drained is not None and not self._drained.done():
            await self._drained  # the client reads slower than we write

    async def close(self, code: int, reason: str) -> None:
        if not self._closed and self.conn.close_sent is None:
            self._send_close(code, reason)

    # internals ------------------------------------------------------------------------
    def _handshaken(self) -> bool:
        return self.conn.state is State.OPEN or self.conn.state is State.CLOSING

    def _handshake(self, request: Request) -> None:
        url = urlsplit(request.path)
        if url.path != WS_PATH:
            self.conn.send_response(self.conn.reject(404, f"no WebSocket at {url.path}\n"))
            self._flush()
            self._abort()
            return
        response = self.conn.accept(request)
        self.conn.send_response(response)
        self._flush()
        if response.status_code != 101:
            self._abort()
            return
        # The handshake's parser keeps the request (headers and all) for as long as the
        # connection lives; the frames get a parser of their own, born open.
        self.conn = ServerProtocol(
            state=State.OPEN, max_size=self.config.ws_max_size, logger=protocol_log
        )
        token = parse_qs(url.query).get("token", [None])[0]
        header = request.headers.get("Authorization")
        task = self.loop.create_task(self._serve(token, header), name="ws-session")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self._arm_ping()

    async def _serve(self, token: str | None, header: str | None) -> None:
        try:
            await serve_socket(self.app.state, self, lambda: token or bearer_token(header))
        except Exception:
            log.exception("socket failed")
            if not self._closed:
                self._send_close(1011, "internal error; reconnect")
        finally:
            if not self._closed and self.conn.close_sent is None:
                self._send_close(1000, "")

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments = [bytes(frame.data)] if opcode is Opcode.TEXT else []
                return
            self._deliver(opcode, bytes(frame.data))
        elif opcode is Opcode.CONT:
            if self._fragments is not None:
                self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments) if self._fragments is not None else b""
                kind = Opcode.TEXT if self._fragments else Opcode.BINARY
                self._fragments = None
                self._deliver(kind, data)
        elif (
            opcode is Opcode.PONG
            and self._ping_payload is not None
            and bytes(frame.data) == self._ping_payload
        ):
            self._ping_payload = None
            if self._pong_due is not None:
                self._pong_due.cancel()
                self._pong_due = None
            self._arm_ping()
        # CLOSE: ServerProtocol queued the answering close frame (or the client's answers
        # ours); data_received sends it and closes. PING: it queued the pong.

    def _deliver(self, opcode: Opcode, data: bytes) -> None:
        if self.conn.close_sent is not None:
            return
        if opcode is Opcode.BINARY:
            text = "\x00binary"  # not part of the protocol: answered like a malformed frame
        else:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self._send_close(1007, "text frame is not UTF-8")
                return
        self._frames.append(text)
        self._wake_reader()
        if len(self._frames) >= READ_AHEAD and not self._read_paused and self.transport:
            self._read_paused = True
            self.transport.pause_reading()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)
        self._reader = None

    def _queue_output(self) -> None:
        self._out += self.conn.data_to_send()
        if not self._flush_scheduled:
            # Frames written in this turn (a pump's batch of deliveries, a batch's
            # answers) leave together in one write.
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out + self.conn.data_to_send()
        self._out = []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))
            if b"" in out:  # the protocol's end of stream: the server closes TCP now
                self._abort()

    def _send_close(self, code: int, reason: str) -> None:
        self.conn.send_close(code, reason)
        self._after_close()

    def _after_close(self) -> None:
        """A close frame is queued: send it, stop pinging, and let the session's reader
        see the end. The client's answer ends the stream (``_flush`` closes the socket
        then); one that never comes, this timer."""
        self._flush()
        self._stop_ping()
        if self._close_timer is None and not self._closed:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT_S, self._abort)
        self._wake_reader()

    def _abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # keepalive ------------------------------------------------------------------------
    def _arm_ping(self) -> None:
        interval = self.config.ws_ping_interval
        if interval and not self._closed:
            self._ping = self.loop.call_later(interval, self._send_ping)

    def _stop_ping(self) -> None:
        for timer in (self._ping, self._pong_due):
            if timer is not None:
                timer.cancel()
        self._ping = self._pong_due = None

    def _send_ping(self) -> None:
        self._ping = None
        if self._closed or self.conn.close_sent is not None:
            return
        self._ping_payload = os.urandom(4)
        self.conn.send_ping(self._ping_payload)
        self._flush()
        timeout = self.config.ws_ping_timeout
        if timeout:
            self._pong_due = self.loop.call_later(timeout, self._ping_unanswered)
        else:
            self._arm_ping()

    def _ping_unanswered(self) -> None:
        self._pong_due = None
        log.warning(
            "socket closed by the keepalive (1011, ping timeout): the client stopped "
            "answering pings, or this gateway was too busy to read them; its messages stay "
            "queued for its next connection"
        )
        self._send_close(1011, "keepalive ping timeout")
