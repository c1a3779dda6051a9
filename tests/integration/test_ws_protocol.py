"""The device WebSocket's own protocol handling (``api/ws_protocol.DirectWebSocket``):
what uvicorn's WebSocket implementation did for the socket before, checked on a real
server with real clients: unknown paths, text that is not UTF-8, the closing handshake
both ways, the 1012 close on shutdown, and many frames from one client at once."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from harness import Gateway, register, run_gateway


async def test_an_upgrade_to_another_path_is_refused_with_404(embedded_gateway: Gateway) -> None:
    url = embedded_gateway.url.replace("http://", "ws://") + "/v1/nope"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 404


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(embedded_gateway: Gateway) -> None:
    alice = await register(embedded_gateway)
    sock = await alice.connect()
    assert json.loads(await asyncio.wait_for(sock.ws.recv(), 10))["type"] == "queue-empty"
    # Below the client library, which would refuse to send it.
    sock.ws.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe not text"))
    sock.ws.send_data()
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(sock.ws.recv(), 10)
    assert sock.ws.close_code == 1007


async def test_the_client_closing_gets_the_closing_handshake(embedded_gateway: Gateway) -> None:
    alice = await register(embedded_gateway)
    sock = await alice.connect()
    assert json.loads(await asyncio.wait_for(sock.ws.recv(), 10))["type"] == "queue-empty"
    await asyncio.wait_for(sock.ws.close(4000, "bye"), 10)
    # The server answered with a close frame (not a dropped connection: that is 1006).
    assert sock.ws.close_code == 4000
    assert sock.ws.protocol.close_rcvd is not None
    assert sock.ws.protocol.close_rcvd.code == 4000


async def test_a_stopping_gateway_closes_its_sockets_with_1012(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "data") as gateway:
        alice = await register(gateway)
        sock = await alice.connect()
        assert json.loads(await asyncio.wait_for(sock.ws.recv(), 10))["type"] == "queue-empty"
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(sock.ws.recv(), 10)
    assert sock.ws.close_code == 1012


async def test_a_thousand_frames_sent_at_once_are_all_answered_in_order(
    embedded_gateway: Gateway,
) -> None:
    """Reading pauses while the session is behind (back-pressure on the client's TCP
    connection) and resumes: nothing read is lost or reordered."""
    alice = await register(embedded_gateway)
    host, port = embedded_gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    client = ClientProtocol(parse_uri(embedded_gateway.ws_url))
    request = client.connect()
    request.headers["Authorization"] = f"Bearer {alice.access_token}"
    client.send_request(request)
    framer = ClientProtocol(parse_uri(embedded_gateway.ws_url), state=State.OPEN)
    for n in range(1000):
        framer.send_text(json.dumps({"id": f"p{n}", "type": "ping"}).encode())
    writer.write(b"".join(client.data_to_send()))
    while client.state is State.CONNECTING:  # a client sends frames after the 101
        client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
    assert client.handshake_exc is None, client.handshake_exc
    writer.write(b"".join(framer.data_to_send()))  # every frame at once
    answered: list[str] = []

    async def read_answers() -> None:
        while len(answered) < 1000:
            data = await reader.read(65536)
            assert data, "the server closed the connection"
            client.receive_data(data)
            for event in client.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    frame = json.loads(event.data)
                    if frame.get("type") == "response":
                        assert frame["status"] == 200, frame
                        answered.append(frame["id"])

    await asyncio.wait_for(read_answers(), 60)
    writer.close()
    await writer.wait_closed()
    assert answered == [f"p{n}" for n in range(1000)]


async def test_a_socket_logs_no_line_of_its_own_unless_asked(
    embedded_gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """websockets says "connection open" and "connection closed" at INFO for every
    socket: at ten thousand sockets, noise (and CPU). They show at DEBUG only."""

    async def connect_and_close() -> None:
        alice = await register(embedded_gateway)
        sock = await alice.connect()
        assert json.loads(await asyncio.wait_for(sock.ws.recv(), 10))["type"] == "queue-empty"
        await asyncio.wait_for(sock.ws.close(), 10)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("tidings.ws")]

    with caplog.at_level(logging.INFO):
        await connect_and_close()
    assert "connection open" not in lines()
    with caplog.at_level(logging.DEBUG, logger="tidings.ws.protocol"):
        await connect_and_close()
        assert "connection open" in lines()
