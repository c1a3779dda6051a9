"""Groups that talk and names instead of ids, through the real ``tidings`` CLI: notices
in the chat and the inbox, ``group list|info|admin|rename|leave``, ``/send-file`` to a
group from inside the chat, profile names, and receipts summarised (never for the
internal sender-key messages)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from cli_support import chatting, platform, texts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_a_group_that_tells_its_members_what_happened(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        ann, ben, cat = user("ann"), user("ben"), user("cat")
        await asyncio.gather(ann.register(), ben.register(), cat.register())
        out, _ = await ann.run("profile", "set-name", "Ann")
        assert out.strip() == f"{ann.user_id}\tAnn\t{ann.phone}"
        await ben.run("profile", "set-name", "Ben")
        _, err = await ben.run("profile", "set-name", "two\nlines", ok=False)
        assert "invalid_input" in err

        out, _ = await ann.run(
            "group", "create", "team", "--member", ben.phone, "--member", cat.phone
        )
        group = out.strip()
        async with chatting(ben) as chat:
            await chat.expect(
                rf"^! \[team\] Ann created the group 'team' with you and {cat.user_id}$"
            )
            await chat.say("/group team")
            await chat.expect(r"^talking in team, 3 members$")
            photo = tmp_path / "photo.jpg"
            photo.write_bytes(os.urandom(20_000))
            await chat.say(f"/send-file {photo}")
            sent = (await chat.expect(r"^sent photo\.jpg (\S+)$")).group(1)

            out, _ = await ann.run("group", "admin", "team", ben.phone)
            assert out.strip() == f"you made Ben ({ben.phone}) an admin"
            await chat.expect(r"^! \[team\] Ann made you an admin$")
            # A command beside the open chat: it only sends, so it may.
            out, _ = await ben.run("group", "rename", group, "friends")
            assert out.strip() == "you renamed the group to 'friends'"
            _, err = await cat.run("group", "rename", group, "cats", ok=False)
            assert "only the group's admins" in err

            rows = await cat.inbox_until(lambda rows: "friends" in " ".join(texts(rows)))
            assert [r[3] for r in rows] == ["notice", "file", "notice", "notice"]
            assert rows[1][:4] == [sent, ben.user_id, f"group:{group}", "file"]
            assert texts(rows)[2:] == [
                "Ann made Ben an admin",
                "Ben renamed the group to 'friends'",
            ]
            out, _ = await cat.run("fetch-file", sent, "--out", str(tmp_path / "got.jpg"))
            assert (tmp_path / "got.jpg").read_bytes() == photo.read_bytes()

            out, _ = await cat.run("group", "list")
            assert out.splitlines() == [f"{group}\tfriends\t3\tmember"]
            out, _ = await cat.run("group", "info", "friends")
            lines = [line.split("\t") for line in out.splitlines()]
            assert lines[0] == [group, "friends"]
            assert sorted(lines[1:]) == sorted(
                [[ann.user_id, "Ann", "admin"], [ben.user_id, "Ben", "admin"],
                 [cat.user_id, "you", "member"]]
            )  # fmt: skip
            await cat.run("send", "--group", "friends", "bye all")
            await chat.expect(rf"^< \[friends\] {cat.user_id}: bye all$")
            out, _ = await cat.run("group", "leave", "friends")
            assert out.strip() == "you left the group"
            await chat.expect(rf"^! \[friends\] {cat.user_id} left the group$")
            out, _ = await cat.run("group", "list")
            assert out.splitlines() == [f"{group}\tfriends\t0\tleft"]
            _, err = await cat.run("group", "send", "nosuchgroup", "hi", ok=False)
            assert "no group named 'nosuchgroup'" in err
            await chat.say("/quit")
            await chat.expect("^bye$")

        _, err = await ann.run("history", "--group", "friends", ok=False)
        assert "no group named 'friends'" in err  # ann has not heard of the rename yet
        rows = await ann.inbox_until(lambda rows: "left the group" in " ".join(texts(rows)))
        assert texts(rows)[1:] == [
            f"Ben ({ben.phone}) renamed the group to 'friends'",  # ann knows his number
            "bye all",
            f"{cat.phone} left the group",
        ]
        out, _ = await ann.run("history", "--group", "friends")
        # In the order this device stored them: ann's own notices when she made them.
        assert [row.split("\t")[3] for row in out.splitlines()] == [
            "notice", "notice", "file", "notice", "text", "notice"
        ]  # fmt: skip


async def test_receipts_are_summarised_and_internal_ones_never_shown(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        ann, ben = user("ann"), user("ben")
        await asyncio.gather(ann.register(), ben.register())
        await ben.run("profile", "set-name", "Ben")
        out, _ = await ann.run("group", "create", "pair", "--member", ben.phone)
        for i in range(3):
            await ann.run("send", "--to", ben.phone, f"message {i}")
        out, _ = await ann.run("history", "--with", ben.phone)
        last = out.splitlines()[-1].split("\t")[0]
        # ben receives them (his client acks the sender-key message too), then opens the
        # conversation: the three are read at once.
        await ben.inbox_until(lambda rows: len(texts(rows)) >= 4)
        async with chatting(ben, "--to", ann.phone) as chat:
            await chat.expect(rf"talking to {re.escape(ann.phone)}")
            await chat.say("/quit")
            await chat.expect("^bye$")
        # ann's own name for ben wins over his profile name, on her device.
        out, _ = await ann.run("contacts", "set-name", ben.phone, "Benny")
        assert out.strip() == f"{ben.user_id}\tBenny ({ben.phone})"
        _, err = await ann.run("contacts", "set-name", ben.phone, "\x1b[2J", ok=False)
        assert "control characters" in err
        out, _ = await ann.run("contacts")
        assert out.splitlines() == [f"{ben.user_id}\tBenny ({ben.phone})"]
        async with chatting(ann) as chat:
            await chat.expect(
                rf"^\* read: 3 messages, up to {last} \(by Benny \({re.escape(ben.phone)}\)\)$"
            )
            await chat.say("/quit")
            await chat.expect("^bye$")
            receipts = [line for line in chat.printed if line.startswith("* ")]
        out, _ = await ann.run("history", "--json")
        shown = set(re.findall(r'"server_id": "([^"]+)"', out))
        for line in receipts:  # delivered/read, for messages ann can see: none internal
            assert set(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", line)) <= shown, line
