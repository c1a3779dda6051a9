"""Groups that tell their members what happened, with real SDK clients and a real
gateway: notices for every change (encrypted: the server routes them like any group
message), renames as encrypted attributes, a removed member told 1:1, forged notices
dropped, and a file sent to a group. Client-side logic: the embedded engines suffice."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from harness import Gateway
from sdk_support import receive, sdk_client
from tidings.client import names, notices
from tidings.client.http import ApiError
from tidings.client.sdk import Client, Event


def _told(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.extra["op"], e.sender_user, e.conversation) for e in events]


async def test_members_are_told_of_every_change(embedded_gateway: Gateway, tmp_path: Path) -> None:
    gateway = embedded_gateway
    alice, bob, carol, dan = [
        await sdk_client(gateway, tmp_path, name) for name in ("alice", "bob", "carol", "dan")
    ]
    try:
        group = await alice.create_group("team", [bob.user_id, carol.user_id])
        conv = f"group:{group}"
        await alice.add_members(group, [dan.user_id])
        await alice.set_admin(group, bob.user_id, True)
        await bob.rename_group(group, "friends")
        with pytest.raises(ApiError, match="admins"):
            await carol.rename_group(group, "carol's")
        with pytest.raises(notices.BadNotice):
            await bob.rename_group(group, "")

        events = await receive(carol, 4, "notice")
        assert _told(events) == [
            ("created", alice.user_id, conv),
            ("added", alice.user_id, conv),
            ("admin", alice.user_id, conv),
            ("renamed", bob.user_id, conv),
        ]
        assert (
            events[0].text == f"{alice.user_id} created the group 'team' with {bob.user_id} and you"
        )
        assert names.group(carol.store, group) == "friends"  # the server still says "team"
        assert (await carol.group_info(group))["name"] == "friends"
        # Added after the creation, dan learns the group from the notice that added him.
        (added, *_) = await receive(dan, 3, "notice")
        assert added.text == f"{alice.user_id} added you"

        await alice.remove_member(group, dan.user_id)
        (removed,) = await receive(dan, 1, "notice")  # 1:1: the new sender key skips him
        assert (removed.text, removed.conversation) == (f"{alice.user_id} removed you", conv)
        assert [m.kind for m in dan.store.history(conv)][-1] == "notice"

        await carol.leave_group(group)
        with pytest.raises(ApiError) as refused:
            await carol.group_info(group)
        assert refused.value.status == 404  # "not found, or you are not a member"
        told = await receive(bob, 5, "notice")  # created, added, admin, removed, left
        assert _told(told)[-2:] == [
            ("removed", alice.user_id, conv),
            ("left", carol.user_id, conv),
        ]
        assert told[-1].text == f"{carol.user_id} left the group"
        mine = [m for m in alice.store.history(conv) if m.kind == "notice"]
        assert [m.extra["op"] for m in mine] == ["created", "added", "admin", "removed"]
        assert {m.status for m in mine} == {"sent"}
    finally:
        for client in (alice, bob, carol, dan):
            await client.close()


async def test_forged_notices_are_dropped_and_a_file_reaches_the_group(
    embedded_gateway: Gateway, tmp_path: Path
) -> None:
    alice, bob = [await sdk_client(embedded_gateway, tmp_path, n) for n in ("alice", "bob")]
    try:
        group = await alice.create_group("team", [bob.user_id], notify=False)
        other = await alice.create_group("other", [bob.user_id], notify=False)
        # A notice naming another group, a rename sent 1:1 (only removals are), and a
        # rename by a member who is not an admin: dropped.
        await alice.send_group(group, notices.notice("renamed", other, "hijacked"))
        await alice.send_direct(bob.user_id, notices.notice("renamed", group, "hijacked"))
        await bob.send_group(group, notices.notice("renamed", group, "bob's now"))
        await alice.send_group_text(group, "after the forgeries")
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(os.urandom(50_000))
        await alice.send_group_file(group, photo)

        listener = asyncio.create_task(bob.listen())
        seen: list[Event] = []
        try:
            async with asyncio.timeout(15):
                while not any(e.kind == "file" for e in seen):
                    seen.append(await bob.events.get())
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        assert [e.kind for e in seen if e.kind != "receipt"] == ["text", "file"]
        assert names.book(bob.store, names.GROUPS).get(group) != "hijacked"
        assert names.book(bob.store, names.GROUPS).get(other) != "hijacked"
        async with asyncio.timeout(15):
            await alice.listen(until_queue_empty=True)
        assert names.group(alice.store, group) == "team"  # bob is no admin
        assert [m.kind for m in alice.store.history(f"group:{group}")] == ["text", "file"]
        file = seen[-1]
        assert (file.conversation, file.text) == (f"group:{group}", "photo.jpg")
        assert await bob.fetch_file(file.extra) == photo.read_bytes()
    finally:
        await alice.close()
        await bob.close()


async def test_an_sdk_client_without_notices_sends_none(
    embedded_gateway: Gateway, tmp_path: Path
) -> None:
    """``notify=False`` (load generators) changes membership and nothing else."""
    alice, bob = [await sdk_client(embedded_gateway, tmp_path, n) for n in ("alice", "bob")]
    try:
        group = await alice.create_group("quiet", [bob.user_id], notify=False)
        await alice.send_group_text(group, "only this")
        (event,) = await receive(bob, 1)
        assert event.text == "only this"
        assert [m.kind for m in bob.store.history(f"group:{group}")] == ["text"]
    finally:
        await alice.close()
        await bob.close()


async def test_two_clients_on_one_store_send_to_a_group_without_breaking_it(
    embedded_gateway: Gateway, tmp_path: Path
) -> None:
    """A chat and a ``tidings group send`` share the account's store: their sender-key
    steps must not repeat each other. A member joins, so both senders' distributions go
    out (awaits between reading the key and storing it) before their sends race."""
    gateway = embedded_gateway
    alice, bob, carol = [await sdk_client(gateway, tmp_path, n) for n in ("alice", "bob", "carol")]
    twin = Client(gateway.url, alice.store.path)  # the other process, in effect
    try:
        group = await alice.create_group("trio", [bob.user_id], notify=False)
        await alice.send_group_text(group, "first")
        await alice.add_members(group, [carol.user_id], notify=False)
        await asyncio.gather(
            alice.send_group_text(group, "from the chat"),
            twin.send_group_text(group, "from a script"),
        )
        # A repeated step would be dropped as a duplicate: the wait would time out.
        got = await receive(bob, 3)
        assert sorted(e.text for e in got) == ["first", "from a script", "from the chat"]
        got = await receive(carol, 2)
        assert sorted(e.text for e in got) == ["from a script", "from the chat"]
    finally:
        for client in (alice, twin, bob, carol):
            await client.close()


async def test_a_member_who_missed_a_rename_learns_the_name_when_added_back(
    embedded_gateway: Gateway, tmp_path: Path
) -> None:
    alice, bob, carol = [
        await sdk_client(embedded_gateway, tmp_path, n) for n in ("alice", "bob", "carol")
    ]
    try:
        group = await alice.create_group("team", [bob.user_id, carol.user_id])
        await receive(bob, 1, "notice")  # created: bob knows it as "team"
        await alice.remove_member(group, bob.user_id)
        await alice.rename_group(group, "friends")  # bob is not a member: no notice
        await alice.add_members(group, [bob.user_id])
        told = await receive(bob, 2, "notice")  # removed (1:1), then added
        assert [e.extra["op"] for e in told] == ["removed", "added"]
        assert names.group(bob.store, group) == "friends"

        # A plain member's forged "added" notice with another name renames nothing.
        await carol.send_group(group, notices.notice("added", group, "carol's", [bob.user_id]))
        await alice.send_group_text(group, "still friends")
        seen = await receive(bob, 1, "text")
        assert seen[0].text == "still friends"
        assert names.group(bob.store, group) == "friends"
    finally:
        for client in (alice, bob, carol):
            await client.close()
