"""The client SDK across devices against the real gateway: linking a second device,
copies of sent messages, receipts and typing over the live socket, prekey upkeep, and
an encrypted backup restored into a new store."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness import Gateway
from sdk_support import receive, sdk_client
from tidings.client import base
from tidings.client.backup import BackupError
from tidings.client.http import ApiError
from tidings.client.provisioning import ProvisioningError
from tidings.client.sdk import Client, Event


async def _link(primary: Client, gateway: Gateway, home: Path, name: str) -> Client:
    device = Client(gateway.url, home / f"{name}.db")
    request = device.link_request()  # shown on the new device
    blob = await primary.create_link(request)  # typed/scanned into the primary
    await device.link(blob, name)  # carried back to the new device
    return device


async def test_a_device_links_through_the_servers_relay(gateway: Gateway, tmp_path: Path) -> None:
    """Only the request travels by hand: the primary approves it, the new device fetches
    the sealed blob; a blob from another number is refused before its code is spent."""
    alice = await sdk_client(gateway, tmp_path, "alice")
    mallory = await sdk_client(gateway, tmp_path, "mallory")
    tablet = Client(gateway.url, tmp_path / "tablet.db")
    try:
        request = tablet.link_request()
        waiting = asyncio.create_task(tablet.wait_for_approval(request, poll_s=0.05))
        await mallory.approve_link(request)  # someone who saw the request, first
        async with asyncio.timeout(10):
            blob = await waiting
        with pytest.raises(
            ProvisioningError, match="not " + re.escape(alice.store.get_json("phone"))
        ):
            await tablet.link(blob, "tablet", phone=alice.store.get_json("phone"))
        assert tablet.api.tokens is None

        request = tablet.link_request()
        await alice.approve_link(request)
        async with asyncio.timeout(10):
            blob = await tablet.wait_for_approval(request, poll_s=0.05)
        assert await tablet.link(blob, "tablet", phone=alice.store.get_json("phone")) == 2
        assert tablet.user_id == alice.user_id
    finally:
        for client in (alice, mallory, tablet):
            await client.close()


@contextlib.asynccontextmanager
async def _listening(*clients: Client) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c.listen()) for c in clients]
    try:
        async with asyncio.timeout(10):
            for client in clients:
                await client.live.connected.wait()
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _next(client: Client, kind: str, text: str | None = None) -> Event:
    async with asyncio.timeout(15):
        while True:
            event = await client.events.get()
            if event.kind == kind and (text is None or event.text == text):
                return event


async def test_linked_device_shares_identity_and_gets_every_message(
    gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    laptop = await _link(alice, gateway, tmp_path, "laptop")
    clients = (alice, bob, laptop)
    try:
        assert (laptop.user_id, laptop.device_id) == (alice.user_id, 2)
        assert laptop.keys is not None
        assert alice.keys is not None
        assert laptop.keys.identity.public_key == alice.keys.identity.public_key
        assert laptop.store.get_json("phone") == alice.store.get_json("phone")
        devices = (await alice.api.call("GET", "/v1/devices"))["devices"]
        assert [d["device_id"] for d in devices] == [1, 2]

        # A message to the account reaches both of its devices.
        await bob.send_text(alice.user_id, "to both of you")
        for device in (alice, laptop):
            (event,) = await receive(device, 1)
            assert (event.text, event.sender_user) == ("to both of you", bob.user_id)

        # What device 1 sends arrives on device 2 as a copy in the right conversation.
        server_id = await alice.send_text(bob.user_id, "sent from the phone")
        (copy,) = await receive(laptop, 1)
        assert (copy.conversation, copy.sender_user, copy.sender_device) == (
            bob.user_id,
            alice.user_id,
            1,
        )
        assert (copy.text, copy.server_id) == ("sent from the phone", server_id)
        (stored,) = laptop.store.history(bob.user_id)[-1:]
        assert (stored.status, stored.extra) == ("sent", {})
        (event,) = await receive(bob, 1)
        assert event.text == "sent from the phone"
        assert "to" not in event.extra

        # And the linked device sends too: bob and the primary both get it.
        await laptop.send_text(bob.user_id, "sent from the laptop")
        (event,) = await receive(bob, 1)
        assert (event.text, event.sender_device) == ("sent from the laptop", 2)
        (copy,) = await receive(alice, 1)
        assert (copy.conversation, copy.text) == (bob.user_id, "sent from the laptop")
    finally:
        for client in clients:
            await client.close()


async def test_read_receipt_typing_and_presence_over_the_live_socket(
    gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    try:
        async with _listening(alice, bob):
            server_id = await alice.send_text(bob.user_id, "did you read this?")
            message = await _next(bob, "text")
            assert message.server_id == server_id

            await bob.typing(alice.user_id, True)
            typing = await _next(alice, "typing")
            assert (typing.sender_user, typing.extra["typing"]) == (bob.user_id, "started")
            await bob.typing(alice.user_id, False)
            typing = await _next(alice, "typing")
            assert typing.extra["typing"] == "stopped"

            (receipt_id,) = await bob.mark_read(alice.user_id, [server_id])
            receipt = await _next(alice, "receipt", "read")
            assert receipt.server_id == receipt_id
            assert receipt.extra["message_ids"] == [server_id]
            assert alice.store.history(bob.user_id)[-1].status == "read"
            assert bob.store.history(alice.user_id)[-1].status == "read"

            (presence,) = await alice.subscribe_presence([bob.user_id])
            assert presence["user"] == bob.user_id
            assert "visible" in presence
            with pytest.raises(ApiError) as refused:
                await bob.ws_request("typing", {"to": {"user": bob.user_id}, "state": "bogus"})
            assert refused.value.status == 422
    finally:
        await alice.close()
        await bob.close()


async def test_prekeys_replenish_after_use_and_signed_prekey_rotates(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    try:
        assert not await bob.rotate_signed_prekey_if_due()
        assert bob.keys is not None
        old_id = bob.keys.signed_prekey.key_id
        assert await bob.rotate_signed_prekey_if_due(now=int(time.time()) + 8 * 86400)
        bundle = await alice.api.call("GET", f"/v1/keys/{bob.user_id}/1")
        assert bundle["devices"][0]["signed_prekey"]["key_id"] == bob.keys.signed_prekey.key_id
        assert bob.keys.signed_prekey.key_id != old_id

        # The session alice starts consumes one of bob's one-time prekeys; the listener
        # tops them up (the low water is raised so one use is enough to trigger it).
        monkeypatch.setattr(base, "PREKEY_LOW_WATER", base.PREKEY_BATCH + 1)
        await alice.send_text(bob.user_id, "uses a one-time prekey")
        assert (
            int((await bob.api.call("GET", "/v1/keys/count"))["count"]) == 98
        )  # one went to the bundle above
        (event,) = await receive(bob, 1)
        assert event.text == "uses a one-time prekey"
        # Topped up before the event was handed over.
        assert int((await bob.api.call("GET", "/v1/keys/count"))["count"]) == 198
    finally:
        await alice.close()
        await bob.close()


async def test_backup_restores_sessions_and_history_and_refuses_a_wrong_passphrase(
    gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    restored: Client | None = None
    try:
        await alice.send_text(bob.user_id, "remember the pineapple")
        await receive(bob, 1)
        await bob.send_text(alice.user_id, "noted")
        await receive(alice, 1)
        blob = await bob.export_backup("correct horse battery staple")
        bob_user = bob.user_id
        await bob.close()  # the phone is lost

        with pytest.raises(BackupError, match="wrong passphrase"):
            await Client.restore_backup(blob, "wrong", gateway.url, tmp_path / "nope.db")
        assert not (tmp_path / "nope.db").exists()

        restored = await Client.restore_backup(
            blob, "correct horse battery staple", gateway.url, tmp_path / "bob-new.db"
        )
        assert (restored.user_id, restored.device_id) == (bob_user, 1)
        assert [m.text for m in restored.store.search("pineapple")] == ["remember the pineapple"]

        await alice.send_text(bob_user, "still there?")
        (event,) = await receive(restored, 1)
        assert event.text == "still there?"
        await restored.send_text(alice.user_id, "yes, restored")
        (reply,) = await receive(alice, 1)
        assert reply.text == "yes, restored"
    finally:
        await alice.close()
        if restored is not None:
            await restored.close()
