"""The client SDK against the real gateway: E2EE 1:1, groups with sender keys, files.

The last test scans every byte the server stored for the plaintexts: none may appear.
"""

from __future__ import annotations

from pathlib import Path

from harness import Gateway
from sdk_support import receive, sdk_client


async def test_two_sdk_clients_exchange_end_to_end_encrypted_messages(
    gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    try:
        for i in range(3):
            await alice.send_text(bob.user_id, f"hello bob {i}")
        got = await receive(bob, 3)
        assert [e.text for e in got] == [f"hello bob {i}" for i in range(3)]
        assert {e.sender_user for e in got} == {alice.user_id}

        await bob.send_text(alice.user_id, "hi alice")
        (reply,) = await receive(alice, 1)
        assert reply.text == "hi alice"
        assert [m.text for m in bob.store.search("alice")] == ["hi alice"]
    finally:
        await alice.close()
        await bob.close()


async def test_group_of_four_with_a_removal_and_a_file(gateway: Gateway, tmp_path: Path) -> None:
    clients = [await sdk_client(gateway, tmp_path, n) for n in ("ann", "ben", "cat", "dan")]
    ann, ben, cat, dan = clients
    try:
        group = await ann.create_group("four", [ben.user_id, cat.user_id, dan.user_id])
        await ann.send_group_text(group, "hello group")
        for member in (ben, cat, dan):
            (event,) = await receive(member, 1)
            assert (event.text, event.conversation) == ("hello group", f"group:{group}")

        await ann.remove_member(group, dan.user_id)
        await ann.send_group_text(group, "dan is gone")
        for member in (ben, cat):
            (event,) = await receive(member, 1)
            assert event.text == "dan is gone"
        # The server no longer routes group messages to dan; the rekey (proved in the
        # sender-key unit tests) keeps him out even if a copy reached him.
        await dan.listen(until_queue_empty=True)
        assert all(m.text != "dan is gone" for m in dan.store.history())

        secret = tmp_path / "photo.bin"
        secret.write_bytes(b"PNG-not-really " * 1000)
        await ann.send_file(ben.user_id, secret)
        (event,) = await receive(ben, 1, kind="file")
        assert event.text == "photo.bin"
        assert await ben.fetch_file(event.extra) == secret.read_bytes()
    finally:
        for client in clients:
            await client.close()


async def test_server_never_stores_plaintext_or_media_content(
    gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    plaintext = "the eagle lands at midnight"
    media = b"TOP-SECRET-MEDIA-CONTENT-" * 50
    try:
        await alice.send_text(bob.user_id, plaintext)
        group = await alice.create_group("g", [bob.user_id])
        await alice.send_group_text(group, plaintext + " (group)")
        path = tmp_path / "secret.bin"
        path.write_bytes(media)
        await alice.send_file(bob.user_id, path)
        await receive(bob, 1, kind="file")
    finally:
        await alice.close()
        await bob.close()
    needles = [plaintext.encode(), b"eagle lands", media[:40], b"TOP-SECRET"]
    scanned = 0
    for stored in gateway.data_dir.rglob("*"):
        if stored.is_file():
            content = stored.read_bytes()
            scanned += len(content)
            for needle in needles:
                assert needle not in content, f"{needle!r} found in server file {stored.name}"
    assert scanned > 0
