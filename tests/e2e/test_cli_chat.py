"""The client CLI as people and scripts use it: real ``tidings`` processes all the way.

``tidings up`` runs in one process; every user is a separate ``tidings`` invocation with
its own ``--home`` (its keys, sessions and history), registering with the dev-mode code
through ``--code-command 'tidings code {phone} --data-dir DATA'``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import pytest

import procs
from cli_support import Interactive, platform, texts

# Every step is a fresh `tidings` process (about a second each on a small machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_two_users_register_and_exchange_messages(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await asyncio.gather(alice.register(), bob.register())
        assert (alice.home / f"{alice.phone}.db").is_file()

        out, _ = await alice.run("send", "--to-phone", bob.phone, "hello bob, it's alice")
        first = out.strip()
        out, _ = await alice.run("send", "--to", bob.user_id, "second\tline\none")
        second = out.strip()
        rows = await bob.inbox_until(lambda rows: len(rows) >= 2)
        assert rows == [
            [first, alice.user_id, alice.user_id, "text", "hello bob, it's alice"],
            [second, alice.user_id, alice.user_id, "text", "second\\tline\\none"],
        ]
        out, _ = await bob.run("inbox")
        assert out == ""  # acked and stored: nothing is delivered twice

        out, _ = await bob.run("send", "--json", "--to", alice.user_id, "hi alice")
        reply = json.loads(out)["server_id"]
        rows = await alice.inbox_until(lambda rows: bool(rows))
        assert rows == [[reply, bob.user_id, bob.user_id, "text", "hi alice"]]

        # History and search are local; bob's acks came back as delivery receipts.
        out, _ = await alice.run("history", "--with", bob.phone, "--json")
        history = [json.loads(line) for line in out.splitlines()]
        assert [(m["text"], m["status"]) for m in history] == [
            ("hello bob, it's alice", "delivered"),
            ("second\tline\none", "delivered"),
            ("hi alice", "received"),
        ]
        out, _ = await bob.run("search", "alice")
        assert texts([line.split("\t") for line in out.splitlines()]) == [
            "hello bob, it's alice",
            "hi alice",
        ]

        # Scripts without a code source get told how to supply one.
        carol = user("carol")
        _, err = await carol.run("register", ok=False)
        assert "--code-command" in err
        _, err = await carol.run("send", "--to", alice.user_id, "hi", ok=False)
        assert "register" in err
        _, err = await alice.run("send", "--to-phone", carol.phone, "hi", ok=False)
        assert "not registered" in err


async def test_group_of_four_with_a_removal(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        ann, ben, cat, dan = (user(n) for n in ("ann", "ben", "cat", "dan"))
        await asyncio.gather(*(u.register() for u in (ann, ben, cat, dan)))
        out, _ = await ann.run(
            "group", "create", "four", "--member", ben.user_id, "--member", cat.phone,
            "--member", dan.user_id,
        )  # fmt: skip
        group = out.strip()
        conversation = f"group:{group}"

        out, _ = await ann.run("group", "send", group, "hello group")
        hello = out.strip()
        for rows in await asyncio.gather(
            *(u.inbox_until(lambda rows: len(rows) >= 2) for u in (ben, cat, dan))
        ):
            # Told they were added (a notice), then the message.
            assert [row[2:4] for row in rows] == [[conversation, "notice"], [conversation, "text"]]
            assert rows[0][4].startswith(f"{ann.user_id} created the group 'four' with ")
            assert rows[1] == [hello, ann.user_id, conversation, "text", "hello group"]

        out, _ = await ann.run("group", "remove", group, dan.phone)
        assert out.strip() == f"you removed {dan.phone}"
        out, _ = await ann.run("group", "send", group, "dan is gone")
        gone = out.strip()
        for rows in await asyncio.gather(
            *(u.inbox_until(lambda rows: len(rows) >= 2) for u in (ben, cat))
        ):
            assert rows[0][2:] == [conversation, "notice", f"{ann.user_id} removed {dan.user_id}"]
            assert rows[1] == [gone, ann.user_id, conversation, "text", "dan is gone"]

        # dan's envelopes arrive in order: once a later direct message reached him, the
        # group message would have too, had the server routed it to him.
        await ann.run("send", "--to", dan.user_id, "a word after the group message")
        rows = await dan.inbox_until(lambda rows: "a word after the group message" in texts(rows))
        assert "dan is gone" not in texts(rows)
        assert [conversation, "notice", f"{ann.user_id} removed you"] in [r[2:] for r in rows]
        _, err = await dan.run("group", "send", group, "let me back in", ok=False)
        assert "not a member" in err

        await ann.run("group", "add", group, dan.user_id)
        out, _ = await ben.run("group", "send", group, "welcome back dan")
        back = out.strip()
        for member in (ann, cat, dan):
            rows = await member.inbox_until(lambda rows: "welcome back dan" in texts(rows))
            assert [back, ben.user_id, conversation, "text", "welcome back dan"] in rows


async def test_a_file_is_sent_and_fetched_byte_identical(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await asyncio.gather(alice.register(), bob.register())
        photo = tmp_path / "holiday.jpg"
        photo.write_bytes(os.urandom(300_000))

        out, _ = await alice.run("send-file", "--to-phone", bob.phone, str(photo))
        server_id = out.strip()
        (row,) = await bob.inbox_until(lambda rows: bool(rows))
        assert row == [server_id, alice.user_id, alice.user_id, "file", "holiday.jpg"]

        saved = tmp_path / "fetched.jpg"
        out, _ = await bob.run("fetch-file", server_id, "--out", str(saved))
        assert out.strip() == str(saved)
        assert saved.read_bytes() == photo.read_bytes()
        _, err = await bob.run("fetch-file", "no-such-message", "--out", str(saved), ok=False)
        assert "no file message" in err


async def test_interactive_chat_driven_through_stdin(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await bob.register()
        # alice has no account in her home yet: chat registers her first.
        process = await asyncio.create_subprocess_exec(
            procs.TIDINGS,
            "chat",
            *alice.options(),
            "--code-command",
            alice.code_command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        chat = Interactive(process)
        a_phone, b_phone = re.escape(alice.phone), re.escape(bob.phone)
        try:
            alice.user_id = (await chat.expect(rf"registered {a_phone} as (\S+)")).group(1)
            await chat.say("hello before a conversation is open")
            await chat.expect("no conversation open")
            await chat.say(f"/to {bob.phone}")
            await chat.expect(rf"talking to {b_phone}")
            await chat.say("hello from the chat")
            sent = (await chat.expect(r"^sent (\S+)")).group(1)

            rows = await bob.inbox_until(lambda rows: bool(rows))
            assert rows == [[sent, alice.user_id, alice.user_id, "text", "hello from the chat"]]
            await chat.expect(rf"^\* delivered {sent} \(by {b_phone}\)")

            out, _ = await bob.run("send", "--to", alice.user_id, "live reply from bob")
            reply = out.strip()
            await chat.expect(rf"^< {b_phone}: live reply from bob$")
            # The conversation is open, so the chat sent bob a read receipt.
            deadline = time.monotonic() + 20
            while True:
                await bob.run("inbox")
                out, _ = await bob.run("history", "--json")
                status = {m["server_id"]: m["status"] for m in map(json.loads, out.splitlines())}
                if status[reply] == "read":
                    break
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.3)

            await chat.say("/history")
            await chat.expect(rf"me: hello from the chat \(delivered\) {sent}")
            await chat.expect(rf"{b_phone}: live reply from bob {reply}")
            await chat.say("/contacts")
            await chat.expect(rf"^contact {bob.user_id} {b_phone}$")
            await chat.say("/quit")
            await chat.expect("^bye$")
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.stderr is not None
        assert await process.stderr.read() == b""  # quiet logging: only the UI prints

        # Signed in from its own home, the next chat does not register again.
        out, _ = await alice.run("chat", "--to", bob.phone)  # stdin is empty: quits at once
        assert out.splitlines()[0] == f"signed in as {alice.phone} ({alice.user_id})"
        assert out.splitlines()[-1] == "bye"
