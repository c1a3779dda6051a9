"""Push-test helpers: a scripted PushSender, /metrics readers, a REST send.

The scripted sender stands in for FCM/APNs on purpose: these tests check the push
worker's decisions; the provider wire protocols are tested against local provider
servers in ``test_fcm_client.py`` / ``test_apns_client.py``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from harness import Device, Gateway, ciphertexts
from tidings.core.push import Outcome, PushMessage, PushResult


@dataclass
class ScriptedSender:
    """Records every message; answers from ``script`` in order, then SENT."""

    script: list[PushResult] = field(default_factory=list)
    gate: asyncio.Event | None = None
    """When given, each send waits for it (to hold a job mid-send)."""
    sent: list[PushMessage] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    closed: bool = False

    async def send(self, message: PushMessage) -> PushResult:
        self.sent.append(message)
        self.times.append(time.monotonic())
        if self.gate is not None:
            await self.gate.wait()
        return self.script.pop(0) if self.script else PushResult(Outcome.SENT)

    async def close(self) -> None:
        self.closed = True


async def metric(gateway: Gateway, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (with these labels) on the real /metrics page."""
    async with gateway.ops_http() as http:
        r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    total = 0.0
    for line in r.text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        series_name, _, label_text = series.partition("{")
        if series_name == name and all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


async def until_metric(
    gateway: Gateway, name: str, expected: float, timeout: float = 10.0, **labels: str
) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await metric(gateway, name, **labels)) < expected:
        assert time.monotonic() < deadline, f"{name}{labels} is {seen}, expected {expected}"
        await asyncio.sleep(0.05)


async def until(check: Any, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def send_text(sender: Device, to: Device, client_id: str, text: str) -> str:
    async with sender.http() as http:
        r = await http.post(
            "/v1/messages",
            json={
                "id": client_id,
                "to": {"user": to.user_id},
                "ciphertexts": ciphertexts({to.user_id: [to.device_id]}, text),
            },
        )
    assert r.status_code == 200, r.text
    server_id: str = r.json()["server_id"]
    return server_id


async def set_token(device: Device, token: str, provider: str = "fcm", alert: bool = False) -> None:
    async with device.http() as http:
        r = await http.put(
            f"/v1/devices/{device.device_id}/push",
            json={"provider": provider, "token": token, "alert": alert},
        )
    assert r.status_code == 204, r.text


async def push_providers(device: Device) -> dict[int, str | None]:
    async with device.http() as http:
        r = await http.get("/v1/devices")
    assert r.status_code == 200, r.text
    return {d["device_id"]: d["push_provider"] for d in r.json()["devices"]}


async def send_many(sender: Device, to: Device, count: int, tag: str) -> list[str]:
    """``count`` REST sends to ``to`` (client ids ``tag-0`` ...); their server ids."""
    return [await send_text(sender, to, f"{tag}-{i}", f"{tag} {i}") for i in range(count)]


async def until_token_removed(device: Device, timeout: float = 10.0) -> None:
    """Wait until the server no longer holds a push token for ``device``."""
    deadline = time.monotonic() + timeout
    while (await push_providers(device))[device.device_id] is not None:
        assert time.monotonic() < deadline, "push token was not removed"
        await asyncio.sleep(0.05)
