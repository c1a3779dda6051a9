"""A local APNs: HTTP/2 over TLS (hypercorn) with Apple's documented request checks.

It verifies what api.push.apple.com verifies for token-based auth — the ES256 provider
token (``kid``, ``iss``, signature, ``iat`` under an hour old), ``apns-topic``,
``apns-push-type`` against the payload, ``apns-priority``, payload size and
``apns-collapse-id`` length — and answers with Apple's status codes and reasons.
Per-token scripts make a token unregistered (410), throttled (429 + Retry-After) or
the service down (503). Every request is recorded, accepted pushes separately.

The provider token is checked with PyJWT, independently of the client's own signer.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from hypercorn.asyncio import serve
from hypercorn.config import Config

from providers.tls import make_tls

MAX_PAYLOAD = 4096
MAX_COLLAPSE_ID = 64
TOKEN_LIFETIME = 3600.0
_PATH = re.compile(r"/3/device/([0-9A-Fa-f]+)")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Script(StrEnum):
    """What the server does with pushes to one device token."""

    UNREGISTERED = "unregistered"
    THROTTLE = "throttle"
    OUTAGE = "outage"


@dataclass(frozen=True)
class Request:
    """One request as the server saw it, and its answer."""

    http_version: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    reason: str

    @property
    def bearer(self) -> str:
        return self.headers.get("authorization", "").removeprefix("bearer ")


@dataclass(frozen=True)
class Push:
    """An accepted push: device token, APNs headers, decoded payload and token claims."""

    token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    jwt_header: dict[str, Any]
    jwt_claims: dict[str, Any]
    apns_id: str


class _Reject(Exception):
    def __init__(self, status: int, reason: str, extra: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.extra = extra or {}


@dataclass
class ApnsApp:
    """The ASGI app: Apple's provider API for one team, key and topic."""

    public_key_pem: bytes
    key_id: str
    team_id: str
    topic: str
    clock: Callable[[], float] = time.time
    retry_after: int = 7
    scripts: dict[str, Script] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    accepted: list[Push] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - APNs speaks only HTTP/2
            return
        body = await _read_body(receive)
        headers = _headers(scope)
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        status, reason, extra = 200, "", {}
        try:
            if scope["http_version"] != "2":
                raise _Reject(505, "HTTP2Required")
            self.accepted.append(self._check(scope, headers, body, apns_id))
        except _Reject as rejected:
            status, reason, extra = rejected.status, rejected.reason, rejected.extra
        self.requests.append(
            Request(
                scope["http_version"], scope["method"], scope["path"], headers, body, status, reason
            )
        )
        await _respond(send, status, apns_id, reason, extra, self.clock())

    def _check(self, scope: Scope, headers: dict[str, str], body: bytes, apns_id: str) -> Push:
        if scope["method"] != "POST":
            raise _Reject(405, "MethodNotAllowed")
        match = _PATH.fullmatch(scope["path"])
        if match is None and scope["path"].startswith("/3/device/"):
            raise _Reject(400, "BadDeviceToken")
        if match is None:
            raise _Reject(404, "BadPath")
        token = match.group(1)
        if _duplicated(scope):
            raise _Reject(400, "DuplicateHeaders")
        jwt_header, claims = self._verify_token(headers)
        self._check_topic(headers)
        payload = self._check_payload(headers, body)
        self._check_headers(headers)
        self._run_script(token)
        return Push(token, headers, payload, jwt_header, claims, apns_id)

    def _verify_token(self, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        authorization = headers.get("authorization", "")
        if not authorization.startswith("bearer "):
            raise _Reject(403, "MissingProviderToken")
        token = authorization.removeprefix("bearer ")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.public_key_pem,
                algorithms=["ES256"],
                options={"verify_iat": False, "require": ["iss", "iat"]},
            )
        except jwt.InvalidTokenError as exc:
            raise _Reject(403, "InvalidProviderToken") from exc
        if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
            raise _Reject(403, "InvalidProviderToken")
        if claims.get("iss") != self.team_id or not isinstance(claims.get("iat"), int):
            raise _Reject(403, "InvalidProviderToken")
        age = self.clock() - claims["iat"]
        if age > TOKEN_LIFETIME:
            raise _Reject(403, "ExpiredProviderToken")
        if age < -60:
            raise _Reject(403, "InvalidProviderToken")
        return header, claims

    def _check_topic(self, headers: dict[str, str]) -> None:
        topic = headers.get("apns-topic")
        if not topic:
            raise _Reject(400, "MissingTopic")
        if topic != self.topic:
            raise _Reject(400, "DeviceTokenNotForTopic")

    def _check_payload(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        if len(body) > MAX_PAYLOAD:
            raise _Reject(413, "PayloadTooLarge")
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            raise _Reject(400, "PayloadEmpty")
        aps: dict[str, Any] = payload["aps"]
        push_type = headers.get("apns-push-type")
        priority = headers.get("apns-priority", "10")
        if priority not in ("1", "5", "10"):
            raise _Reject(400, "BadPriority")
        if push_type == "background":
            if aps.get("content-available") != 1 or {"alert", "sound", "badge"} & aps.keys():
                raise _Reject(400, "InvalidPushType")
            if priority == "10":  # Apple: background pushes at priority 10 are an error
                raise _Reject(400, "BadPriority")
        elif push_type == "alert":
            if "alert" not in aps:
                raise _Reject(400, "InvalidPushType")
        else:
            raise _Reject(400, "InvalidPushType")
        return payload

    def _check_headers(self, headers: dict[str, str]) -> None:
        collapse = headers.get("apns-collapse-id")
        if collapse is not None and len(collapse.encode()) > MAX_COLLAPSE_ID:
            raise _Reject(400, "BadCollapseId")
        expiration = headers.get("apns-expiration")
        if expiration is not None and not expiration.isdigit():
            raise _Reject(400, "BadExpirationDate")

    def _run_script(self, token: str) -> None:
        script = self.scripts.get(token)
        if script is Script.UNREGISTERED:
            raise _Reject(410, "Unregistered")
        if script is Script.THROTTLE:
            raise _Reject(429, "TooManyRequests", {"retry-after": str(self.retry_after)})
        if script is Script.OUTAGE:
            raise _Reject(503, "ServiceUnavailable")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (the last one wins; see ``_duplicated``)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def _duplicated(scope: Scope) -> bool:
    """Whether an ``apns-*`` or authorization header came more than once."""
    names = [name.decode("latin-1").lower() for name, _ in scope["headers"]]
    apns = [n for n in names if n.startswith("apns-") or n == "authorization"]
    return len(apns) != len(set(apns))


async def _respond(
    send: Send, status: int, apns_id: str, reason: str, extra: dict[str, str], now: float
) -> None:
    headers = [(b"apns-id", apns_id.encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    body = b""
    if reason:
        error: dict[str, Any] = {"reason": reason}
        if status == 410:
            error["timestamp"] = int(now * 1000)
        body = json.dumps(error).encode()
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class RunningApns:
    """A served :class:`ApnsApp`: its ``https://127.0.0.1:port`` URL and CA file."""

    app: ApnsApp
    url: str
    ca_file: Path


@asynccontextmanager
async def run_apns_server(app: ApnsApp, directory: Path) -> AsyncIterator[RunningApns]:
    """Serve ``app`` with hypercorn (TLS, ALPN h2) on 127.0.0.1, a free port."""
    tls = make_tls(directory)
    ca_file, cert_file, key_file = tls.ca_file, tls.cert_file, tls.key_file
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket
    config.certfile, config.keyfile = str(cert_file), str(key_file)
    config.alpn_protocols = ["h2"]
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait, mode="asgi"))  # type: ignore[arg-type]
    try:
        await _wait_ready(task, port, ca_file)
        yield RunningApns(app, f"https://127.0.0.1:{port}", ca_file)
    finally:
        stop.set()
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


async def _wait_ready(task: asyncio.Task[None], port: int, ca_file: Path) -> None:
    """Until a TLS handshake that negotiates h2 succeeds (raises if the server died)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["h2"])
    deadline = time.monotonic() + 10
    while True:
        if task.done():
            task.result()
            raise RuntimeError("APNs test server stopped before it was ready")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
            continue
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.selected_alpn_protocol() == "h2"
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()
        return
