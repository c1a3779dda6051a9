"""Test harness: a real gateway on loopback and devices that speak to it over HTTP + WS.

Nothing here is a stand-in for the server: requests go through uvicorn and the real
app. Key material is real (Ed25519 / X25519 from ``cryptography``); message bodies are
opaque bytes, since the server never reads them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from opentelemetry.sdk.trace.export import SpanExporter

from tidings import server
from tidings.bootstrap import create_apps
from tidings.config import Settings
from tidings.core.push import Provider
from tidings.engines.embedded.otp import latest_code
from tidings.ports import PushSender

_phones = itertools.count(1)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def new_phone() -> str:
    return f"+1555{os.getpid() % 1000:03d}{next(_phones):04d}"


@dataclass
class Gateway:
    url: str
    data_dir: Path
    running: server.Running | None = None
    """The client server, when it runs in this process."""
    engine: str = "embedded"
    ops_url: str = ""
    """The operations port (``/metrics``, ``/analytics/daily/*``); empty when unknown."""

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/ws"

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10.0)

    def ops_http(self) -> httpx.AsyncClient:
        """A client of the operations port (metrics, analytics)."""
        assert self.ops_url, "this gateway's operations port is not known"
        return httpx.AsyncClient(base_url=self.ops_url, timeout=10.0)

    def code_for(self, phone: str) -> str:
        code = latest_code(self.data_dir / "otp-outbox.jsonl", phone)
        assert code is not None, f"no code logged for {phone}"
        return code


@contextlib.asynccontextmanager
async def run_gateway(
    data_dir: Path,
    components: tuple[str, ...] | None = None,
    push_senders: Mapping[Provider, PushSender] | None = None,
    clock: Callable[[], float] = time.time,
    span_exporter: SpanExporter | None = None,
    port: int = 0,
    **overrides: Any,
) -> AsyncIterator[Gateway]:
    """A gateway with ``components`` (default: what ``tidings up`` runs; with
    ``push_senders``, the push worker too, sending through them) on ``clock``; traced
    spans go to ``span_exporter`` when given. ``port`` (default: any free one) lets a
    test stop the gateway and start it again where its clients expect it."""
    settings = Settings(data_dir=data_dir, **{"inbox_poll_interval": 0.5, **overrides})
    apps = create_apps(
        settings,
        components=components,
        push_senders=push_senders,
        clock=clock,
        span_exporter=span_exporter,
    )
    serving = await server.serve(
        apps.client, apps.ops, host="127.0.0.1", port=port, ops_port=0, log_level="warning"
    )
    try:
        yield Gateway(serving.url, data_dir, serving.client, settings.engine, serving.ops_url)
    finally:
        await serving.stop()


@dataclass
class Device:
    gateway: Gateway
    phone: str
    user_id: str
    device_id: int
    access_token: str
    refresh_token: str
    registration_id: int
    identity: Ed25519PrivateKey | None = None

    def http(self) -> httpx.AsyncClient:
        return self.gateway.http(self.access_token)

    async def publish_keys(self, one_time: int = 5, first_id: int = 1) -> None:
        """Identity key (primary only), a signed prekey and ``one_time`` prekeys."""
        async with self.http() as http:
            if self.identity is None:
                self.identity = Ed25519PrivateKey.generate()
                r = await http.put(
                    "/v1/keys/identity", json={"identity_key": b64(raw_public(self.identity))}
                )
                assert r.status_code == 204, r.text
            signed = raw_public(X25519PrivateKey.generate())
            r = await http.put(
                "/v1/keys/signed",
                json={
                    "key_id": 1,
                    "public_key": b64(signed),
                    "signature": b64(self.identity.sign(signed)),
                },
            )
            assert r.status_code == 204, r.text
            if one_time:
                prekeys = [
                    {
                        "key_id": first_id + i,
                        "public_key": b64(raw_public(X25519PrivateKey.generate())),
                    }
                    for i in range(one_time)
                ]
                r = await http.post("/v1/keys/one-time", json={"prekeys": prekeys})
                assert r.status_code == 200, r.text

    async def link(self, name: str = "laptop") -> Device:
        """Link a new device to this (primary) device's account."""
        async with self.http() as http:
            r = await http.post("/v1/devices/link-code")
            assert r.status_code == 200, r.text
            code = r.json()["code"]
        async with self.gateway.http() as http:
            r = await http.post(
                "/v1/devices/link", json={"code": code, "device_name": name, "registration_id": 77}
            )
            assert r.status_code == 200, r.text
            t = r.json()
        return Device(
            self.gateway,
            self.phone,
            t["user_id"],
            t["device_id"],
            t["access_token"],
            t["refresh_token"],
            77,
            identity=self.identity,
        )

    async def connect(self) -> Socket:
        ws = await websockets.connect(
            self.gateway.ws_url,
            additional_headers={"Authorization": f"Bearer {self.access_token}"},
            max_size=2**21,
        )
        return Socket(ws)

    async def devices_of(self, user_id: str) -> list[int]:
        async with self.http() as http:
            r = await http.get(f"/v1/keys/{user_id}")
            assert r.status_code == 200, r.text
            return [d["device_id"] for d in r.json()["devices"]]


async def register(gateway: Gateway, phone: str | None = None, registration_id: int = 1) -> Device:
    phone = phone or new_phone()
    async with gateway.http() as http:
        r = await http.post("/v1/auth/code", json={"phone": phone})
        assert r.status_code == 202, r.text
        r = await http.post(
            "/v1/auth/register",
            json={
                "phone": phone,
                "code": gateway.code_for(phone),
                "registration_id": registration_id,
            },
        )
        assert r.status_code == 200, r.text
        t = r.json()
    return Device(
        gateway,
        phone,
        t["user_id"],
        t["device_id"],
        t["access_token"],
        t["refresh_token"],
        registration_id,
    )


async def online(device: Device) -> Socket:
    """Connect ``device`` and wait until its offline backlog is drained (queue-empty)."""
    sock = await device.connect()
    await sock.frame("queue-empty")
    return sock


def ciphertexts(devices: dict[str, list[int]], text: str) -> dict[str, list[dict[str, Any]]]:
    """Opaque per-device bodies (the server never decrypts; tests check routing)."""
    return {
        user: [{"device": d, "body": b64(f"{text}|{user}|{d}".encode())} for d in ds]
        for user, ds in devices.items()
    }


def body_text(delivery: dict[str, Any]) -> str:
    return base64.b64decode(delivery["body"]).decode().split("|")[0]


@dataclass
class Socket:
    ws: Any
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    backlog: list[dict[str, Any]] = field(default_factory=list)

    async def _next(self, timeout: float) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout=timeout)
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def request(
        self, kind: str, body: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        rid = f"c{next(self._ids)}"
        frame: dict[str, Any] = {"id": rid, "type": kind}
        if body is not None:
            frame["body"] = body
        await self.ws.send(json.dumps(frame))
        return await self.response_to(rid, timeout)

    async def response_to(self, rid: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            frame = await self._next(timeout)
            if frame.get("type") == "response" and frame.get("id") == rid:
                return frame
            self.backlog.append(frame)

    async def frame(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next server frame of ``kind`` (others are kept in order for later)."""
        for i, frame in enumerate(self.backlog):
            if frame.get("type") == kind:
                return self.backlog.pop(i)
        while True:
            frame = await self._next(timeout)
            if frame.get("type") == kind:
                return frame
            self.backlog.append(frame)

    async def deliveries(
        self, count: int, ack: bool = True, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            frame = await self.frame("deliver", timeout)
            if ack:
                await self.ack(frame)
            out.append(frame["body"])
        return out

    async def ack(self, frame: dict[str, Any], status: int = 200) -> None:
        await self.ws.send(json.dumps({"id": frame["id"], "type": "response", "status": status}))

    async def nothing_for(self, kind: str, seconds: float) -> None:
        """Assert no ``kind`` frame arrives within ``seconds``."""
        with contextlib.suppress(TimeoutError):
            frame = await self.frame(kind, timeout=seconds)
            raise AssertionError(f"unexpected {kind} frame: {frame}")

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def close(self) -> None:
        await self.ws.close()


# waiting on the server ------------------------------------------------------------
async def next_frame(sock: Socket, timeout: float = 10.0) -> dict[str, Any]:
    """The next server frame in arrival order (frames held back by the harness first)."""
    if sock.backlog:
        return sock.backlog.pop(0)
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(sock.ws.recv(), timeout=timeout))
    return frame


async def inbox_writes(gateway: Gateway) -> float:
    """Envelopes the delivery worker has stored so far (from the real /metrics endpoint)."""
    async with gateway.ops_http() as http:
        r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    for line in r.text.splitlines():
        if line.startswith("tidings_inbox_writes_total "):
            return float(line.split()[1])
    return 0.0


async def until_stored(gateway: Gateway, total: float, timeout: float = 10.0) -> None:
    """Wait until the delivery worker has stored ``total`` envelopes in all."""
    deadline = time.monotonic() + timeout
    while (seen := await inbox_writes(gateway)) < total:
        assert time.monotonic() < deadline, f"only {seen} of {total} envelopes stored"
        await asyncio.sleep(0.05)


async def settle(sock: Socket) -> None:
    """Return once the server has processed every frame sent before: the gateway reads a
    socket's frames in order and answers a ping only after the acks ahead of it."""
    reply = await sock.request("ping")
    assert reply["status"] == 200, reply
