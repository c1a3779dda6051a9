"""A listening SDK client keeps its socket: it pings before the server's heartbeat timeout.

The server closes a socket with no frame for ``heartbeat_timeout_s`` (4002); WebSocket
protocol pings do not count. Against a gateway with a 1 s timeout, a client pinging every
0.2 s keeps one connection, and one that pings too rarely is closed and reconnects.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from harness import new_phone, online, register, run_gateway
from tidings.client import receiving
from tidings.client.sdk import Client
from tidings.services.gateway import SocketSession


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


async def test_a_slow_request_does_not_count_as_the_clients_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the server handles one frame (a send waiting out a broker restart), the
    client's next frames wait unread: that is the server's delay, not a dead client."""
    real_heartbeat = SocketSession.heartbeat
    calls = 0

    async def slow_first_ping(self: SocketSession) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(2.5)  # 2.5 times the heartbeat timeout
        await real_heartbeat(self)

    monkeypatch.setattr(SocketSession, "heartbeat", slow_first_ping)
    async with run_gateway(tmp_path / "data", heartbeat_timeout_s=1.0) as gateway:
        sock = await online(await register(gateway))
        slow = asyncio.create_task(sock.request("ping"))
        for i in range(10):  # the client stays lively meanwhile
            await asyncio.sleep(0.2)
            await sock.ws.send(json.dumps({"id": f"p{i}", "type": "ping"}))
        assert (await slow)["status"] == 200
        assert (await sock.request("ping"))["status"] == 200  # still the same socket
        assert sock.ws.close_code is None
        await sock.close()
