"""The live WebSocket of ``Client.listen()``, usable for requests while it receives.

``listen()`` attaches the socket it opened; any task may then :meth:`LiveSocket.request`
a frame (receipt, typing, presence, ping). Requests carry ids ``c1``, ``c2``, ... and are
matched to the server's ``response`` frames (read by the listen loop, which hands them to
:meth:`LiveSocket.resolve`). When the socket closes, waiting requests fail with an
:class:`ApiError` of status 0.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from tidings.client.http import ApiError


class LiveSocket:
    def __init__(self) -> None:
        self._ws: Any = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        """Set once a connection attempt failed or the socket closed, until it is back."""

    def attach(self, ws: Any) -> None:
        self._ws = ws
        self.disconnected.clear()
        self.connected.set()

    def detach(self) -> None:
        self._ws = None
        self.connected.clear()
        self.disconnected.set()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    ApiError(0, "disconnected", "the socket closed before the answer", {})
                )

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame (serialized with other senders on this socket)."""
        ws = self._ws
        if ws is None:
            raise ApiError(0, "not_connected", "no live socket; run listen() first", {})
        async with self._lock:
            await ws.send(json.dumps(frame))

    async def request(
        self, kind: str, body: dict[str, Any] | None = None, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send a request frame and wait for its response body; errors raise ApiError.

        Waits up to ``timeout`` for ``listen()`` to (re)connect first."""
        try:
            async with asyncio.timeout(timeout):
                await self.connected.wait()
                request_id = f"c{next(self._ids)}"
                future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                self._pending[request_id] = future
                frame: dict[str, Any] = {"id": request_id, "type": kind}
                if body is not None:
                    frame["body"] = body
                try:
                    await self.send(frame)
                    return await future
                finally:
                    self._pending.pop(request_id, None)
        except TimeoutError:
            raise ApiError(0, "timeout", f"no answer to {kind!r} within {timeout}s", {}) from None

    def resolve(self, frame: dict[str, Any]) -> bool:
        """Complete the request a ``response`` frame answers; False if none waits for it."""
        future = self._pending.pop(str(frame.get("id")), None)
        if future is None or future.done():
            return False
        status = int(frame.get("status", 0))
        body = frame.get("body") or {}
        if status >= 300:
            error = body.get("error", {})
            code, message = str(error.get("code", "error")), str(error.get("message", ""))
            future.set_exception(ApiError(status, code, message, error.get("details") or {}))
        else:
            future.set_result(body)
        return True
