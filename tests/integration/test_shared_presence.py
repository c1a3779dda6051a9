"""Several gateway processes on one Redis: device channels and presence cross processes.

Two ``tidings serve gateway`` processes and one ``tidings serve delivery`` share a data
directory and a real Redis (``TIDINGS_REDIS_URL``): a device that connects to the second
gateway closes its socket on the first (4001), and a message sent through one gateway
reaches a device connected to the other.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

import procs
from harness import Device, body_text, ciphertexts, online, register

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def _cluster(tmp_path: Path, redis_url: str) -> AsyncIterator[list[procs.Proc]]:
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    # Each test gets its own region, so its Redis keys and channels are its own.
    env = {"TIDINGS_REDIS_URL": redis_url, "TIDINGS_REGION": f"t{uuid.uuid4().hex[:12]}"}
    async with (
        procs.running(["serve", "gateway"], data, log, env) as first,
        procs.running(["serve", "gateway"], data, log, env) as second,
        procs.running(["serve", "delivery"], data, log, env),
    ):
        yield [first, second]


def _on(device: Device, proc: procs.Proc, data: Path) -> Device:
    device.gateway = proc.gateway(data)
    return device


async def test_a_device_connecting_to_another_gateway_process_closes_the_old_socket(
    tmp_path: Path, redis_url: str
) -> None:
    data = tmp_path / "data"
    async with _cluster(tmp_path, redis_url) as (first, second):
        bob = await register(first.gateway(data))
        old = await online(bob)
        new = await _on(bob, second, data).connect()
        await new.frame("queue-empty")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await old.frame("never", timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4001
        await new.close()


async def test_a_message_sent_through_one_gateway_reaches_a_device_on_the_other(
    tmp_path: Path, redis_url: str
) -> None:
    data = tmp_path / "data"
    async with _cluster(tmp_path, redis_url) as (first, second):
        alice = await register(first.gateway(data))
        bob = _on(await register(first.gateway(data)), second, data)
        sock = await online(bob)
        alice_sock = await alice.connect()
        body = {
            "id": "across",
            "to": {"user": bob.user_id},
            "ciphertexts": ciphertexts({bob.user_id: [1]}, "across gateways"),
        }
        assert (await alice_sock.request("send", body))["status"] == 200
        (delivery,) = await sock.deliveries(1)
        assert body_text(delivery) == "across gateways"
        await sock.close()
        await alice_sock.close()
