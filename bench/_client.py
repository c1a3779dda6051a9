"""The load generator's raw-protocol client: one device's WebSocket (``Conn``), what a phase
does with its frames (``Sink``), the handshake, and the bounded waits they share."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

T = TypeVar("T")

PING_AFTER_S = 30.0
"""The protocol wants a frame at least every 30 s (the server closes after 90 s)."""
RETRY_STATUSES = frozenset({429, 503})
MAX_FRAME = 1 << 20

dumps = functools.partial(json.dumps, separators=(",", ":"))
loads = json.loads


class BenchError(Exception):
    """The run cannot go on (setup failed); the message says why."""


class Closed(Exception):
    """The socket closed before the request was answered."""


class Refused(Exception):
    """A socket could not be opened, or closed before ``queue-empty``."""


@dataclass
class Account:
    phone: str
    user_id: str
    token: str


async def until(event: asyncio.Event, deadline: float) -> bool:
    """Wait for ``event`` until the monotonic ``deadline``; True if it was set."""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
    return event.is_set()


async def bounded(items: Iterable[T], limit: int, job: Callable[[T], Awaitable[Any]]) -> None:
    """Run ``job`` over ``items``, at most ``limit`` at once."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await job(item)

    try:
        async with asyncio.TaskGroup() as group:  # a failure cancels the others
            for item in items:
                group.create_task(one(item))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None


def error_text(answer: dict[str, Any]) -> str:
    err = (answer.get("body") or {}).get("error") or {}
    return f"{answer.get('status')} {err.get('code', '?')}"


class Sink:
    """What a phase does with a socket's frames; the default ignores messages."""

    def __init__(self) -> None:
        self.closes: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def message(self, conn: Conn, body: dict[str, Any], now: float) -> None:
        """A ``deliver`` of a message (already acked)."""

    def receipt(self, conn: Conn, body: dict[str, Any]) -> None:
        """A ``deliver`` of a receipt (already acked)."""

    def closed(self, conn: Conn, code: int, reason: str) -> None:
        self.closes[f"{code} {reason}".strip()] += 1


async def handshake(
    ws_url: str, account: Account, sink: Sink, deadline: float, compression: str
) -> ClientConnection:
    """The WebSocket upgrade of ``account``; raises ``Refused`` (counted in ``sink``)."""
    try:
        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
            return await connect(
                ws_url,
                additional_headers={"Authorization": f"Bearer {account.token}"},
                max_size=MAX_FRAME,
                ping_interval=None,
                open_timeout=None,
                close_timeout=5,
                compression=None if compression == "none" else "deflate",
                user_agent_header=None,
            )
    except InvalidStatus as exc:
        reason = f"HTTP {exc.response.status_code}"
        sink.refused[reason] += 1
        raise Refused(reason) from None
    except TimeoutError:
        sink.refused["no handshake before the deadline"] += 1
        raise Refused("timeout") from None
    except (OSError, InvalidHandshake, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:120]
        sink.refused[reason] += 1
        raise Refused(reason) from None


class Conn:
    """One device's socket. A reader task acks every ``deliver`` at once, hands it to the
    sink, answers the requests waiting on a ``response`` and notes a close by the
    server (code and reason)."""

    def __init__(self, ws: ClientConnection, account: Account, sink: Sink, started: float):
        self.ws, self.account, self.sink = ws, account, sink
        self.started = started
        self.ready_at = 0.0
        self.ready = asyncio.Event()
        self.closed = False
        self.closing = False
        self.close_code: tuple[int, str] | None = None
        self.last_sent = time.monotonic()
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def send_text(self, text: str) -> None:
        self.last_sent = time.monotonic()
        await self.ws.send(text)

    async def request(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request frame and wait for its ``response``; raises ``Closed``."""
        if self.closed:
            raise Closed()
        self._ids += 1
        rid = f"r{self._ids}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        frame: dict[str, Any] = {"id": rid, "type": kind}
        if body is not None:
            frame["body"] = body
        try:
            await self.send_text(dumps(frame))
        except ConnectionClosed:
            self.pending.pop(rid, None)
            raise Closed() from None
        return await future

    async def ping(self) -> None:
        self._ids += 1
        with contextlib.suppress(ConnectionClosed):
            await self.send_text(dumps({"id": f"p{self._ids}", "type": "ping"}))

    async def _read(self) -> None:
        ws, sink = self.ws, self.sink
        try:
            while True:
                raw = await ws.recv()
                now = time.perf_counter()
                frame = loads(raw)
                kind = frame.get("type")
                if kind == "deliver":
                    await self.send_text(
                        dumps({"id": frame["id"], "type": "response", "status": 200})
                    )
                    body = frame["body"]
                    if body.get("type") == "message":
                        sink.message(self, body, now)
                    else:
                        sink.receipt(self, body)
                elif kind == "response":
                    future = self.pending.pop(frame.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif kind == "queue-empty":
                    self.ready_at = now
                    self.ready.set()
        except ConnectionClosed as exc:
            if not self.closing:
                rcvd = exc.rcvd
                if rcvd is not None:
                    self.close_code = (rcvd.code, rcvd.reason)
                else:
                    self.close_code = (1006, "connection dropped, no close frame")
                sink.closed(self, *self.close_code)
        except Exception as exc:  # a frame this load generator cannot read: report it
            self.close_code = (0, f"load generator: {type(exc).__name__}: {exc}")
            sink.closed(self, *self.close_code)
            with contextlib.suppress(Exception):
                await ws.close()
        finally:
            self.closed = True
            self.ready.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(Closed())
            self.pending.clear()

    async def close(self) -> None:
        if not self.closed:
            self.closing = True
            with contextlib.suppress(Exception):
                await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)
