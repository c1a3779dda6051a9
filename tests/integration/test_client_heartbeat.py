"""A listening SDK client keeps its socket: it pings before the server's heartbeat timeout.

The server closes a socket with no frame for ``heartbeat_timeout_s`` (4002); WebSocket
protocol pings do not count. Against a gateway with a 1 s timeout, a client pinging every
0.2 s keeps one connection, and one that pings too rarely is closed and reconnects.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from harness import new_phone, run_gateway
from tidings.client import receiving
from tidings.client.sdk import Client


async def _connections_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, heartbeat_s: float, seconds: float
) -> int:
    connects = 0
    real_connect = receiving.websockets.connect

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        nonlocal connects
        connects += 1
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(receiving, "HEARTBEAT_S", heartbeat_s)
    monkeypatch.setattr(receiving.websockets, "connect", counting_connect)
    async with run_gateway(tmp_path / "data", heartbeat_timeout_s=1.0) as gateway:
        client = Client(gateway.url, tmp_path / "me.db")

        async def code(phone: str) -> str:
            return gateway.code_for(phone)

        await client.register(new_phone(), code)
        listener = asyncio.create_task(client.listen())
        try:
            await asyncio.sleep(seconds)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await client.close()
    return connects


async def test_listening_client_pings_and_keeps_its_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await _connections_in(tmp_path, monkeypatch, heartbeat_s=0.2, seconds=3.0) == 1


async def test_a_client_that_does_not_ping_is_dropped_and_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await _connections_in(tmp_path, monkeypatch, heartbeat_s=60.0, seconds=3.0) > 1
