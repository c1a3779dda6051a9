"""Simulated devices for ``tidings bench load``.

Two kinds behind one interface (:class:`SimDevice`):

- :class:`SdkDevice` is a real SDK :class:`~tidings.client.sdk.Client` with its own local
  store: X3DH + Double Ratchet for 1:1, sender keys for groups, dedupe by server id.
- :class:`RawDevice` (``--no-e2ee``) speaks the same REST + WebSocket API with the SDK's
  :class:`~tidings.client.http.Api` and ``websockets``, but sends the app text as a plain
  base64 body: it measures the server alone, without any client-side crypto or store.

Every device is its own single-device account (device 1), so a direct message has one
recipient copy and a group message one copy per other member.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import websockets

from tidings.client.http import Api
from tidings.client.sdk import Client, Event
from tidings.errors import TidingsError

log = logging.getLogger("tidings.loadgen")

READY_TIMEOUT_S = 30.0
"""How long a device may take to connect and drain its backlog (``queue-empty``)."""


class LoadError(TidingsError):
    """The load generator cannot run (no server, no dev-mode codes, a refused setup)."""


class Sink(Protocol):
    """Where devices report what their app layer saw."""

    def received(self, device: int, text: str, at: float) -> None:
        """Device ``device`` got app text ``text`` (decrypted, deduped) at wall time ``at``."""

    def error(self, kind: str) -> None:
        """Something went wrong on the receiving side (counted by ``kind``)."""


class OtpOutbox:
    """Dev-mode one-time codes, read from the server's ``otp-outbox.jsonl``.

    The file has one JSON object a line: ``{"phone", "code", "at"}``; the newest line
    for a phone wins. Read incrementally, so N registrations do not re-read N times.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._codes: dict[str, str] = {}
        # One scan at a time: each scan advances the shared offset by what it read, so
        # two scans in threads at once skipped lines (a registration then found no code).
        self._scanning = asyncio.Lock()

    def _scan(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next scan
        for line in chunk[:end].splitlines():
            if line.strip():
                entry = json.loads(line)
                self._codes[str(entry["phone"])] = str(entry["code"])
        self._offset += end

    async def code(self, phone: str) -> str:
        """The latest code sent to ``phone`` (waits briefly for the line to appear)."""
        for _ in range(50):
            async with self._scanning:
                await asyncio.to_thread(self._scan)
            found = self._codes.pop(phone, None)
            if found is not None:
                return found
            await asyncio.sleep(0.1)
        raise LoadError(
            f"no one-time code for {phone} in {self.path}: is the server in dev mode, and is "
            "this its data directory's otp-outbox.jsonl?"
        )


class SimDevice(abc.ABC):
    """One simulated device: register, listen, send to a user or a group."""

    def __init__(self, index: int, sink: Sink) -> None:
        self.index = index
        self.sink = sink
        self.user_id = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    @property
    @abc.abstractmethod
    def redeliveries(self) -> int:
        """Deliveries of a server id already processed (absorbed by the dedupe)."""

    @abc.abstractmethod
    async def register(self, phone: str, outbox: OtpOutbox) -> None:
        """Create the account with a code from ``outbox``; sets ``user_id``."""

    @abc.abstractmethod
    async def _listen(self) -> None:
        """Receive until cancelled; set ``_ready`` at the first ``queue-empty``."""

    @abc.abstractmethod
    async def send_direct(self, user_id: str, text: str) -> None:
        """Send ``text`` to ``user_id``; returns once the server accepted it."""

    @abc.abstractmethod
    async def send_group(self, group_id: str, text: str) -> None:
        """Send ``text`` to every other member of ``group_id``."""

    @abc.abstractmethod
    async def create_group(self, name: str, members: list[str]) -> str:
        """Create a group (this device's account is its admin); returns its id."""

    async def start(self) -> None:
        """Open the socket and return once the backlog is drained."""
        self._tasks.append(asyncio.create_task(self._listen()))
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self._ready.wait()
        except TimeoutError:
            raise LoadError(f"device {self.index} got no queue-empty from the server") from None

    async def close(self) -> None:
        """Stop listening and release connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _CountingClient(Client):
    """The SDK client, counting redeliveries its server-id dedupe absorbs."""

    redeliveries = 0

    async def handle(self, envelope: dict[str, Any]) -> Event | None:
        if self.store.processed(str(envelope["server_id"])):
            self.redeliveries += 1
        return await super().handle(envelope)


class SdkDevice(SimDevice):
    """A real SDK client with its own local store at ``store_path``.

    The SDK keeps session and sender-key state in read-modify-write steps around network
    calls, so one device sends one message at a time (as a phone would); receiving runs
    alongside (decryption never yields to the event loop mid-update).
    """

    def __init__(self, index: int, sink: Sink, server: str, store_path: Path) -> None:
        super().__init__(index, sink)
        self.client = _CountingClient(server, store_path)
        self._send_lock = asyncio.Lock()

    @property
    def redeliveries(self) -> int:
        return self.client.redeliveries

    async def register(self, phone: str, outbox: OtpOutbox) -> None:
        self.user_id = await self.client.register(phone, outbox.code)

    async def _listen(self) -> None:
        self._tasks.append(asyncio.create_task(self._consume()))
        self._tasks.append(asyncio.create_task(self._signal_ready()))
        await self.client.listen()

    async def _signal_ready(self) -> None:
        await self.client.queue_empty.wait()
        self._ready.set()

    async def _consume(self) -> None:
        while True:
            event = await self.client.events.get()
            if event.kind == "text":
                self.sink.received(self.index, event.text, time.time())
            elif event.kind == "undecryptable":
                self.sink.error("undecryptable")

    async def send_direct(self, user_id: str, text: str) -> None:
        async with self._send_lock:
            await self.client.send_text(user_id, text)

    async def send_group(self, group_id: str, text: str) -> None:
        async with self._send_lock:
            await self.client.send_group_text(group_id, text)

    async def create_group(self, name: str, members: list[str]) -> str:
        return await self.client.create_group(name, members, notify=False)

    async def close(self) -> None:
        await super().close()
        await self.client.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class RawDevice(SimDevice):
    """``--no-e2ee``: the same API with plain base64 bodies and no local store.

    Acks after processing and dedupes by server id, as the SDK does; sends may overlap.
    """

    def __init__(self, index: int, sink: Sink, server: str) -> None:
        super().__init__(index, sink)
        self.api = Api(server)
        self._seen: set[str] = set()
        self._redeliveries = 0

    @property
    def redeliveries(self) -> int:
        return self._redeliveries

    async def register(self, phone: str, outbox: OtpOutbox) -> None:
        await self.api.request_code(phone)
        code = await outbox.code(phone)
        tokens = await self.api.register(phone, code, secrets.randbelow(16380) + 1, "loadgen")
        self.user_id = tokens.user_id

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            used = self.api.tokens
            assert used is not None
            try:
                async with websockets.connect(
                    self.api.ws_url,
                    additional_headers={"Authorization": f"Bearer {used.access_token}"},
                ) as ws:
                    backoff = 0.2
                    async for raw in ws:
                        await self._frame(ws, json.loads(raw))
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 4401:
                    await self.api.refresh(used)
                else:
                    log.info("device %d: socket closed (%s); reconnecting", self.index, exc)
            except OSError as exc:
                log.info("device %d: connection failed (%s); retrying", self.index, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _frame(self, ws: websockets.ClientConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "queue-empty":
            self._ready.set()
        elif kind == "deliver":
            now = time.time()
            body = frame["body"]
            server_id = str(body["server_id"])
            if server_id in self._seen:
                self._redeliveries += 1
            else:
                self._seen.add(server_id)
                if body["type"] == "message":
                    try:
                        text = base64.b64decode(body["body"], validate=True).decode()
                    except (KeyError, ValueError):
                        self.sink.error("undecodable")
                    else:
                        self.sink.received(self.index, text, now)
            await ws.send(json.dumps({"id": frame["id"], "type": "response", "status": 200}))

    async def send_direct(self, user_id: str, text: str) -> None:
        body = {
            "id": str(uuid.uuid4()),
            "to": {"user": user_id},
            "ciphertexts": {user_id: [{"device": 1, "body": _b64(text)}]},
        }
        await self.api.call("POST", "/v1/messages", body)

    async def send_group(self, group_id: str, text: str) -> None:
        body = {"id": str(uuid.uuid4()), "to": {"group": group_id}, "group_body": _b64(text)}
        await self.api.call("POST", "/v1/messages", body)

    async def create_group(self, name: str, members: list[str]) -> str:
        answer = await self.api.call("POST", "/v1/groups", {"name": name, "members": members})
        return str(answer["group_id"])

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(Exception):
            await self.api.close()
