"""The push path through the real APNs client to a local HTTP/2 APNs server: a burst to
an offline iOS device gives one background push; 410 Unregistered removes the token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import Device, Gateway, register, run_gateway
from providers.apns_server import ApnsApp, RunningApns, Script, run_apns_server
from push_support import send_many, set_token, until, until_token_removed

KEY_ID, TEAM_ID, TOPIC = "KEY1234567", "TEAM123456", "org.tidings.app"


def _key_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture
async def apns(tmp_path: Path) -> AsyncIterator[tuple[RunningApns, Path]]:
    private, public = _key_pair()
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_bytes(private)
    async with run_apns_server(ApnsApp(public, KEY_ID, TEAM_ID, TOPIC), tmp_path) as running:
        yield running, key_file


@pytest.fixture
async def gateway(tmp_path: Path, apns: tuple[RunningApns, Path]) -> AsyncIterator[Gateway]:
    running, key_file = apns
    async with run_gateway(
        tmp_path / "data",
        push_providers="apns",
        apns_endpoint=running.url,
        apns_key_file=key_file,
        apns_key_id=KEY_ID,
        apns_team_id=TEAM_ID,
        apns_topic=TOPIC,
        apns_ca_file=running.ca_file,
        push_collapse_s=1.0,
    ) as gw:
        yield gw


async def _offline_with_token(gateway: Gateway, token: str) -> tuple[Device, Device]:
    sender, device = await register(gateway), await register(gateway)
    await set_token(device, token, provider="apns")
    return sender, device


async def test_a_burst_gives_one_background_push_over_http2(
    gateway: Gateway, apns: tuple[RunningApns, Path]
) -> None:
    running, _ = apns
    token = "b" * 64
    sender, device = await _offline_with_token(gateway, token)
    await send_many(sender, device, 4, "apns")
    await until(lambda: any(p.token == token for p in running.app.accepted))
    await asyncio.sleep(0.5)
    (push,) = [p for p in running.app.accepted if p.token == token]
    assert push.payload == {"aps": {"content-available": 1}}
    assert push.headers["apns-push-type"] == "background"
    assert push.headers["apns-topic"] == TOPIC
    assert all(r.http_version == "2" for r in running.app.requests)


async def test_410_unregistered_removes_the_apns_token(
    gateway: Gateway, apns: tuple[RunningApns, Path]
) -> None:
    running, _ = apns
    token = "c" * 64
    running.app.scripts[token] = Script.UNREGISTERED
    sender, device = await _offline_with_token(gateway, token)
    await send_many(sender, device, 1, "apns")

    await until_token_removed(device)
    tried = sum(1 for r in running.app.requests if r.path.endswith(token))
    await asyncio.sleep(1.1)
    await send_many(sender, device, 1, "apns-again")  # a new message, past the window
    await asyncio.sleep(1.0)
    assert sum(1 for r in running.app.requests if r.path.endswith(token)) == tried == 1
