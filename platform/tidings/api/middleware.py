"""ASGI middleware: request body size limit and per-route Prometheus metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.metrics import Metrics


class _TooLarge(Exception):
    pass


def _reject(limit: int) -> tuple[dict[str, Any], bytes]:
    body = json.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": f"request body exceeds {limit} bytes",
                "details": {"limit": limit},
            }
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, body


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, by header or while streaming.

    Paths under ``exempt`` (presigned blob uploads) enforce their own sizes.
    """

    def __init__(self, app: ASGIApp, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._send_413(send)
                return
        seen = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answer here: the app may turn the exception into its own error
                    # (FastAPI reports a body read failure as 400), which is then dropped.
                    if not started and not refused:
                        refused = True
                        await self._send_413(send)
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started and not refused:
                await self._send_413(send)

    async def _send_413(self, send: Send) -> None:
        start, body = _reject(self.limit)
        await send(start)
        await send({"type": "http.response.body", "body": body})


class HttpMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.http_requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.http_seconds.labels(path).observe(time.perf_counter() - started)
