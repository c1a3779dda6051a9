"""Nothing accepted is lost: SIGKILL between ``accepted`` and delivery, then restart.

The processes are the real ``tidings`` command; the data directory (SQLite in WAL
mode) is all that survives the kill.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import procs
from harness import Device, body_text, ciphertexts, register

pytestmark = pytest.mark.slow


async def _send_rest(sender: Device, to: Device, client_id: str, text: str) -> str:
    async with sender.http() as http:
        r = await http.post(
            "/v1/messages",
            json={
                "id": client_id,
                "to": {"user": to.user_id},
                "ciphertexts": ciphertexts({to.user_id: [1]}, text),
            },
        )
    assert r.status_code == 200, r.text
    server_id: str = r.json()["server_id"]
    return server_id


def _rebind(device: Device, proc: procs.Proc, data_dir: Path) -> Device:
    device.gateway = proc.gateway(data_dir)
    return device


async def test_message_accepted_by_a_gateway_killed_before_delivery_arrives_after_restart(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    # Only the gateway runs: accepted envelopes wait on the bus, nothing delivers them.
    gateway_only = await procs.start(["serve", "gateway"], data, log)
    try:
        gw = gateway_only.gateway(data)
        alice, bob = await register(gw), await register(gw)
        sent = [await _send_rest(alice, bob, f"m{i}", f"before-crash-{i}") for i in range(5)]
    finally:
        gateway_only.kill()
        assert await gateway_only.wait() == -9

    async with procs.running(["up"], data, log) as whole:
        bob = _rebind(bob, whole, data)
        sock = await bob.connect()
        got = await sock.deliveries(5)
        await sock.frame("queue-empty")
        await sock.close()
    assert [d["server_id"] for d in got] == sent
    assert [body_text(d) for d in got] == [f"before-crash-{i}" for i in range(5)]


async def test_messages_in_flight_when_the_whole_platform_is_killed_are_delivered_once_in_order(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    first = await procs.start(["up"], data, log)
    try:
        gw = first.gateway(data)
        alice, bob = await register(gw), await register(gw)
        sent = [await _send_rest(alice, bob, f"m{i}", f"burst-{i}") for i in range(30)]
    finally:
        first.kill()  # somewhere between accepted, stored and notified
        await first.wait()

    async with procs.running(["up"], data, log) as second:
        bob = _rebind(bob, second, data)
        sock = await bob.connect()
        got = await sock.deliveries(30)
        await sock.frame("queue-empty")
        await sock.close()
    assert [d["server_id"] for d in got] == sent
    assert len({d["server_id"] for d in got}) == 30
    assert [base64.b64decode(d["body"]).decode().split("|")[0] for d in got] == [
        f"burst-{i}" for i in range(30)
    ]
