"""The WebSocket session as a sans-I/O state machine.

Text frames go in, events and frames to send come out; the FastAPI endpoint only moves
bytes. Frames are JSON objects with a request id in both directions:

- client request:  ``{"id": "r1", "type": "send", "body": {...}}``
- server answer:   ``{"id": "r1", "type": "response", "status": 200, "body": {...}}``
- server request:  ``{"id": "s5", "type": "deliver", "body": {...envelope...}}``
- client answer:   ``{"id": "s5", "type": "response", "status": 200}`` (the ack)

The session keeps at most ``max_in_flight`` deliveries unacked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tidings.core import jsoncodec

CLOSE_CONNECTED_ELSEWHERE = 4001
CLOSE_HEARTBEAT_TIMEOUT = 4002
CLOSE_SERVED_ELSEWHERE = 4003
"""A failover or failback moved the account to another region: reconnect where
``GET /v1/regions/mine`` says (its wake-ups are published there, not here)."""
CLOSE_UNAUTHORIZED = 4401
CLOSE_SERVER_SHUTDOWN = 1001
CLOSE_TRY_AGAIN_LATER = 1013
"""A store or the bus is down for the moment: reconnect with backoff (not a sign-out)."""

CLIENT_REQUEST_TYPES = frozenset(
    {"send", "typing", "receipt", "presence.subscribe", "presence.unsubscribe", "ping"}
)
_FRAME_KEYS = frozenset({"id", "type", "body", "status"})
MAX_REQUEST_ID_CHARS = 64


@dataclass(frozen=True)
class Request:
    """A client request that the service layer must answer."""

    id: str
    type: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Acked:
    """The client acked a delivery."""

    server_id: str


@dataclass(frozen=True)
class Nacked:
    """The client refused a delivery; it stays in the inbox for the next connection."""

    server_id: str


@dataclass(frozen=True)
class FrameRejected:
    """A frame was malformed; answer with an error and keep the connection."""

    id: str | None
    status: int
    message: str


Event = Request | Acked | Nacked | FrameRejected


def response(request_id: str | None, status: int, body: dict[str, Any] | None = None) -> str:
    frame: dict[str, Any] = {"id": request_id, "type": "response", "status": status}
    if body is not None:
        frame["body"] = body
    return jsoncodec.dumps_text(frame)


def error(request_id: str | None, status: int, code: str, message: str, **details: Any) -> str:
    body = {"code": code, "message": message, "details": details}  # details: {} when none
    return response(request_id, status, {"error": body})


def event(kind: str, body: dict[str, Any] | None = None) -> str:
    """A server-sent frame that needs no answer (queue-empty, typing, presence)."""
    frame: dict[str, Any] = {"type": kind}
    if body is not None:
        frame["body"] = body
    return jsoncodec.dumps_text(frame)


@dataclass
class Session:
    """Per-socket protocol state: parses frames, tracks the in-flight window."""

    max_in_flight: int
    max_frame_chars: int
    in_flight: dict[str, str] = field(default_factory=dict)
    """delivery request id -> server id"""
    _next_id: int = 0

    @property
    def room(self) -> int:
        return self.max_in_flight - len(self.in_flight)

    def deliver(self, server_id: str, envelope: dict[str, Any]) -> str:
        """Frame a delivery and count it in flight. Callers check ``room`` first."""
        self._next_id += 1
        request_id = f"s{self._next_id}"
        self.in_flight[request_id] = server_id
        return jsoncodec.dumps_text({"id": request_id, "type": "deliver", "body": envelope})

    def receive(self, text: str) -> Event:
        if len(text) > self.max_frame_chars:
            return FrameRejected(
                None, 413, f"frame is {len(text)} characters; at most {self.max_frame_chars}"
            )
        try:
            frame = jsoncodec.loads(text)
        except ValueError:
            return FrameRejected(None, 400, "frame is not valid JSON")
        if not isinstance(frame, dict):
            return FrameRejected(None, 400, "frame must be a JSON object")
        request_id = frame.get("id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
            return FrameRejected(
                None, 400, f"frame needs an 'id' string of 1..{MAX_REQUEST_ID_CHARS} characters"
            )
        if unknown := sorted(set(frame) - _FRAME_KEYS):
            return FrameRejected(request_id, 400, f"unknown frame fields: {', '.join(unknown)}")
        kind = frame.get("type")
        if kind == "response":
            return self._ack(request_id, frame.get("status"))
        if kind not in CLIENT_REQUEST_TYPES:
            allowed = ", ".join(sorted(CLIENT_REQUEST_TYPES | {"response"}))
            return FrameRejected(request_id, 400, f"unknown frame type {kind!r}; one of {allowed}")
        body = frame.get("body", {})
        if not isinstance(body, dict):
            return FrameRejected(request_id, 400, "frame 'body' must be a JSON object")
        return Request(request_id, str(kind), body)

    def _ack(self, request_id: str, status: object) -> Event:
        if not isinstance(status, int) or isinstance(status, bool):
            return FrameRejected(request_id, 400, "a response frame needs an integer 'status'")
        server_id = self.in_flight.pop(request_id, None)
        if server_id is None:
            return FrameRejected(request_id, 404, f"no delivery {request_id!r} is awaiting an ack")
        return Acked(server_id) if status < 300 else Nacked(server_id)
