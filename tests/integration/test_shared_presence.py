"""Several gateway processes on one Redis: device channels and presence cross processes.

Two ``tidings serve gateway`` processes and one ``tidings serve delivery`` share a data
directory and a real Redis (``TIDINGS_REDIS_URL``): a device that connects to the second
gateway closes its socket on the first (4001), and a message sent through one gateway
reaches a device connected to the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

import procs
from harness import Device, body_text, ciphertexts, online, register
from tidings.services.directory import DEVICES_TTL_S

pytestmark = pytest.mark.slow

DIRECTORY_BOUND_S = DEVICES_TTL_S / 5


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


async def test_a_device_linked_through_one_gateway_is_required_by_sends_through_the_other(
    tmp_path: Path, redis_url: str
) -> None:
    """Each process caches device lists for seconds; a change made through one gateway
    reaches the others' caches through Redis at once, well before the cache would
    expire (the bound below is a fifth of its lifetime)."""
    data = tmp_path / "data"
    async with _cluster(tmp_path, redis_url) as (first, second):
        alice = _on(await register(first.gateway(data)), second, data)
        bob = await register(first.gateway(data))
        body = {
            "to": {"user": bob.user_id},
            "ciphertexts": ciphertexts({bob.user_id: [1]}, "hello"),
        }
        async with alice.http() as http:  # the second gateway now holds bob's one device
            r = await http.post("/v1/messages", json={"id": "before", **body})
            assert r.status_code == 200, r.text
        laptop = await bob.link()  # through the first gateway

        deadline = asyncio.get_running_loop().time() + DIRECTORY_BOUND_S
        async with alice.http() as http:
            for attempt in itertools.count():
                r = await http.post("/v1/messages", json={"id": f"after-{attempt}", **body})
                if r.status_code == 409 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["details"]["missing"] == {bob.user_id: [laptop.device_id]}
