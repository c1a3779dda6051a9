"""The outbox keeps files and replies too, against a real embedded gateway that is
stopped and started again on the same port: queued while it is down, they go out once,
in order with the queued texts; the file is read when queued (deleting it afterwards
changes nothing) and reaches the recipient as the same bytes; and a retry after a lost
answer neither uploads the file again nor delivers it twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import procs
from harness import Gateway, new_phone, run_gateway
from sdk_support import sdk_client
from tidings.client import content, outbox
from tidings.client.http import ApiError
from tidings.client.outbox_store import Queued
from tidings.client.sdk import Client, Event
from tidings.client.sending import seal_file

SHOWN = ("text", "file")


async def _until(client: Client, count: int) -> list[Event]:
    """The first ``count`` texts and files ``client`` receives (bounded wait)."""
    got: list[Event] = []
    listener = asyncio.create_task(client.listen())
    try:
        async with asyncio.timeout(20):
            while len(got) < count:
                event = await client.events.get()
                if event.kind in SHOWN:
                    got.append(event)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    return got


async def _register(gateway: Gateway, *clients: Client) -> None:
    async def code(phone: str) -> str:
        return gateway.code_for(phone)

    for client in clients:
        await client.register(new_phone(), code)


async def test_a_file_and_a_reply_queued_offline_go_out_once_in_order(tmp_path: Path) -> None:
    data, port = tmp_path / "data", procs.free_port()
    photo = tmp_path / "photo.bin"
    original = bytes(range(256)) * 300
    photo.write_bytes(original)
    alice = Client(f"http://127.0.0.1:{port}", tmp_path / "alice.db")
    bob = Client(f"http://127.0.0.1:{port}", tmp_path / "bob.db")
    try:
        async with run_gateway(data, port=port) as gateway:
            await _register(gateway, alice, bob)
            before = (await outbox.send_or_queue(alice, bob.user_id, "before")).server_id
            assert before

        # Down: everything waits, in the order it was sent.
        assert (await outbox.send_or_queue(alice, bob.user_id, "one")).queued == 1
        assert (await outbox.send_file_or_queue(alice, bob.user_id, photo)).queued == 2
        photo.unlink()  # kept encrypted in the outbox when queued: no longer needed
        reply = alice.reply_content(bob.user_id, before, "re before")
        assert (await outbox.send_content_or_queue(alice, bob.user_id, reply)).queued == 3
        assert (await outbox.send_or_queue(alice, bob.user_id, "two")).queued == 4
        queued = alice.store.outbox.entries()
        assert [outbox.listed(q) for q in queued] == [
            "one",
            f"[file, {len(original)} bytes] photo.bin",
            f"[reply to {before}] re before",
            "two",
        ]
        file_id = queued[1].client_id

        uploads = _counting_uploads(alice)
        lose_answer_once(alice, file_id)
        async with run_gateway(data, port=port):
            # The file was uploaded and sent, but its answer was lost: it stays queued
            # with the media id it was uploaded as, after "one" went.
            with pytest.raises(ApiError, match="the answer was lost"):
                await outbox.flush(alice)
            waiting = alice.store.outbox.entries()
            assert [q.client_id for q in waiting] == [q.client_id for q in queued[1:]]
            assert waiting[0].media_id is not None
            assert waiting[0].blob is None

            flushed = await outbox.flush(alice)
            assert [c for c, _ in flushed.sent] == [q.client_id for q in queued[1:]]
            assert alice.store.outbox.entries() == []
            assert uploads == [len(queued[1].blob or b"")]  # one upload, never two
            after = await outbox.send_or_queue(alice, bob.user_id, "three")

            got = await _until(bob, 6)  # a second file would come before "three"
            assert [(e.kind, e.text) for e in got] == [
                ("text", "before"),
                ("text", "one"),
                ("file", "photo.bin"),
                ("text", "re before"),
                ("text", "two"),
                ("text", "three"),
            ]
            assert got[3].extra["reply_to"] == before
            assert got[-1].server_id == after.server_id
            assert await bob.fetch_file(got[2].extra) == original
    finally:
        await alice.close()
        await bob.close()


def _counting_uploads(client: Client) -> list[int]:
    """Record the size of every upload ``client`` makes."""
    sizes: list[int] = []
    upload = client.upload_sealed

    async def counted(blob: bytes) -> str:
        sizes.append(len(blob))
        return await upload(blob)

    client.upload_sealed = counted  # type: ignore[method-assign]
    return sizes


def lose_answer_once(client: Client, client_id: str) -> None:
    """The first send under ``client_id`` arrives, but its answer does not."""
    send_to = client.send_to
    lost = False

    async def losing(conversation: str, payload: dict[str, Any], **kw: Any) -> str:
        nonlocal lost
        server_id = await send_to(conversation, payload, **kw)
        if kw.get("client_id") == client_id and not lost:
            lost = True
            raise ApiError(outbox.UNREACHABLE, "unreachable", "the answer was lost", {})
        return server_id

    client.send_to = losing  # type: ignore[method-assign]


async def test_two_flushes_at_once_upload_and_send_a_queued_file_once(
    embedded_gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(embedded_gateway, tmp_path, "alice")
    bob = await sdk_client(embedded_gateway, tmp_path, "bob")
    try:
        path = tmp_path / "notes.txt"
        path.write_bytes(b"twice? no")
        payload, blob = await seal_file(path)
        alice.store.outbox.queue(Queued("f1", bob.user_id, "notes.txt", payload, blob))
        uploads = _counting_uploads(alice)
        # The chat's flush on reconnect and a typed message's flush, at the same time.
        both = await asyncio.gather(outbox.flush(alice), outbox.flush(alice))
        assert sorted(len(f.sent) for f in both) == [0, 1]
        assert len(uploads) == 1
        await outbox.send_or_queue(alice, bob.user_id, "after")
        got = await _until(bob, 2)  # a second file would come before "after"
        assert [(e.kind, e.text) for e in got] == [("file", "notes.txt"), ("text", "after")]
        assert await bob.fetch_file(got[0].extra) == b"twice? no"
    finally:
        await alice.close()
        await bob.close()


async def test_a_timer_set_offline_waits_and_the_texts_after_it_go_under_it(
    tmp_path: Path,
) -> None:
    data, port = tmp_path / "data", procs.free_port()
    alice = Client(f"http://127.0.0.1:{port}", tmp_path / "alice.db")
    bob = Client(f"http://127.0.0.1:{port}", tmp_path / "bob.db")
    try:
        async with run_gateway(data, port=port) as gateway:
            await _register(gateway, alice, bob)
            assert (await outbox.send_or_queue(alice, bob.user_id, "before")).server_id

        # Down: the timer change waits like a message, and the text after it too.
        timer = content.timer(3600)
        assert (await outbox.send_content_or_queue(alice, bob.user_id, timer)).queued == 1
        assert (await outbox.send_or_queue(alice, bob.user_id, "after")).queued == 2
        assert [outbox.listed(q) for q in alice.store.outbox.entries()] == [
            "[disappearing messages] 1h",
            "after",
        ]
        assert alice.timer(bob.user_id) == 0  # not in force before it went

        async with run_gateway(data, port=port):
            flushed = await outbox.flush(alice)
            assert len(flushed.sent) == 2
            assert not flushed.refused
            got = await _until(bob, 2)
        assert [e.text for e in got] == ["before", "after"]
        assert alice.timer(bob.user_id) == bob.timer(alice.user_id) == 3600
        kept = {m.text: m for m in bob.store.history(alice.user_id)}
        assert "expires_at" not in kept["before"].extra
        assert "expires_at" in kept["after"].extra  # sent under the timer queued first
    finally:
        await alice.close()
        await bob.close()
