"""Message features with real SDK clients and a real gateway: replies, reactions
replaced and removed, edits and deletes for everyone (only by their sender, only within
the time limit) and disappearing messages swept from the history and the search index
on a fake clock, 1:1 and in a group. All of it is encrypted content: the server routes
it like any message. Client-side logic: the embedded engines suffice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness import Gateway
from sdk_support import receive, sdk_client
from tidings.client import content
from tidings.client.sdk import Client


def _later(client: Client, seconds: float) -> None:
    """Move ``client``'s clock ``seconds`` past the real one (no sleeping)."""
    base = time.time()
    client.clock = lambda: base + seconds


async def test_reply_react_edit_delete(embedded_gateway: Gateway, tmp_path: Path) -> None:
    alice = await sdk_client(embedded_gateway, tmp_path, "alice")
    bob = await sdk_client(embedded_gateway, tmp_path, "bob")
    try:
        first = await alice.send_text(bob.user_id, "lunch at noon tomorrow?")
        await receive(bob, 1)
        answer = await bob.send_reply(alice.user_id, first, "yes, the usual place")
        (got,) = await receive(alice, 1)
        assert (got.server_id, got.text) == (answer, "yes, the usual place")
        assert got.extra == {"reply_to": first, "excerpt": "lunch at noon tomorrow?"}
        assert content.decorate(got.text, got.extra).startswith(
            '↪ replying to "lunch at noon tomorrow?"'
        )

        await bob.react(first, "👍")
        await bob.react(first, "❤️")  # replaces bob's 👍
        await alice.react(first, "❤️")
        await receive(alice, 2, "reaction")
        assert alice.store.message(first).extra["reactions"] == {  # type: ignore[union-attr]
            bob.user_id: "❤️",
            alice.user_id: "❤️",
        }
        await bob.react(first, "")  # removes it
        await receive(alice, 1, "reaction")
        await receive(bob, 1, "reaction")  # alice's
        for client in (alice, bob):
            stored = client.store.message(first)
            assert stored is not None
            assert stored.extra["reactions"] == {alice.user_id: "❤️"}

        await alice.edit(first, "lunch at one tomorrow?")
        (edited,) = await receive(bob, 1, "edit")
        assert edited.extra == {"target": first}
        for client in (alice, bob):
            stored = client.store.message(first)
            assert stored is not None
            assert (stored.text, stored.extra["edited"]) == ("lunch at one tomorrow?", True)
            assert [m.server_id for m in client.store.search("one tomorrow")] == [first]
            assert client.store.search("noon") == []  # the old wording left the index

        with pytest.raises(content.Refused, match="only its sender"):
            await bob.edit(first, "bob was here")
        # A forged edit (a modified client) is sent anyway: alice's client ignores it.
        await bob.send_to(alice.user_id, content.edit(first, "bob was here"))
        await bob.send_text(alice.user_id, "marker")
        await receive(alice, 1)
        assert alice.store.message(first).text == "lunch at one tomorrow?"  # type: ignore[union-attr]

        _later(alice, content.EDIT_WINDOW_S + 60)
        with pytest.raises(content.Refused, match="within 24 h"):
            await alice.edit(first, "too late")
        with pytest.raises(content.Refused, match="within 24 h"):
            await alice.delete_for_everyone(first)
        alice.clock = time.time

        await alice.delete_for_everyone(first)
        await receive(bob, 1, "delete")
        for client in (alice, bob):
            stored = client.store.message(first)
            assert stored is not None
            assert (stored.text, stored.extra) == ("", {"deleted": True})
            assert client.store.search("tomorrow") == []
            quoting = client.store.message(answer)  # its quote of the deleted text goes too
            assert quoting is not None
            assert content.decorate(quoting.text, quoting.extra) == (
                "↪ replying to (deleted) yes, the usual place"
            )
        with pytest.raises(content.Refused, match="deleted"):
            await bob.react(first, "😮")
    finally:
        await alice.close()
        await bob.close()
    # Only ciphertext reached the server: no text, no quote, not even the content types.
    needles = [b"lunch at", b"usual place", b"reply_to", b'"reaction"', "❤️".encode()]
    for stored in embedded_gateway.data_dir.rglob("*"):
        if stored.is_file():
            data = stored.read_bytes()
            for needle in needles:
                assert needle not in data, f"{needle!r} found in server file {stored.name}"


async def test_disappearing_messages_one_to_one(embedded_gateway: Gateway, tmp_path: Path) -> None:
    alice = await sdk_client(embedded_gateway, tmp_path, "alice")
    bob = await sdk_client(embedded_gateway, tmp_path, "bob")
    try:
        kept = await alice.send_text(bob.user_id, "kept forever")
        await alice.set_timer(bob.user_id, 60)
        (notice,) = await receive(bob, 1, "timer")
        assert notice.text.endswith("set disappearing messages to 1m")
        assert (alice.timer(bob.user_id), bob.timer(alice.user_id)) == (60, 60)

        gone = await alice.send_text(bob.user_id, "burn after reading")
        await receive(bob, 1)  # "kept forever" went by with the timer notice
        back = await bob.send_text(alice.user_id, "burning it")  # bob's timer applies too
        await receive(alice, 1)
        for client in (alice, bob):
            assert client.store.search("burn*")
            assert client.sweep_expired() == []  # not yet
            _later(client, 61)
            assert sorted(client.sweep_expired()) == sorted([gone, back])
            assert client.store.message(gone) is None
            assert client.store.message(back) is None
            assert client.store.search("burn*") == []
            assert client.store.message(kept) is not None  # sent before the timer

        # Bob's clock is a minute ahead: a message due by then is never shown to him.
        late = await alice.send_text(bob.user_id, "already gone")
        await bob.listen(until_queue_empty=True)
        assert bob.store.processed(late)  # delivered and decrypted, then swept at once
        assert bob.store.message(late) is None
        while not bob.events.empty():
            assert bob.events.get_nowait().server_id != late

        await bob.set_timer(alice.user_id, 0)  # either party may turn it off
        await receive(alice, 1, "timer")
        assert alice.timer(bob.user_id) == 0
    finally:
        await alice.close()
        await bob.close()


async def test_disappearing_messages_in_a_group(embedded_gateway: Gateway, tmp_path: Path) -> None:
    ann, ben, cat = [await sdk_client(embedded_gateway, tmp_path, n) for n in ("ann", "ben", "cat")]
    try:
        group = await ann.create_group("trio", [ben.user_id, cat.user_id])
        conv = f"group:{group}"
        await ann.set_timer(conv, 300)
        for member in (ben, cat):
            (notice,) = await receive(member, 1, "timer")
            assert notice.conversation == conv
        sent = await ben.send_group_text(group, "meet at the old mill")
        (got,) = await receive(cat, 1)
        assert got.extra["expires_at"] == cat.store.message(sent).timestamp + 300_000  # type: ignore[union-attr]
        await receive(ann, 1)
        await ann.react(sent, "🎉")
        await receive(cat, 1, "reaction")
        _later(cat, 299)
        assert cat.sweep_expired() == []
        _later(cat, 301)
        assert cat.sweep_expired() == [sent]
        assert cat.store.search("mill") == []
        assert [m.kind for m in cat.store.history(conv)] == ["notice", "timer"]
    finally:
        for client in (ann, ben, cat):
            await client.close()
