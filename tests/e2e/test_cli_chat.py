"""The client CLI as people and scripts use it: real ``tidings`` processes all the way.

``tidings up`` runs in one process; every user is a separate ``tidings`` invocation with
its own ``--home`` (its keys, sessions and history), registering with the dev-mode code
through ``--code-command 'tidings code {phone} --data-dir DATA'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import procs
from harness import new_phone

# Every step is a fresh `tidings` process (about a second each on a small machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class User:
    """One account's CLI: ``run`` invokes ``tidings SUBCOMMAND ... --phone --home --server``."""

    server: str
    data_dir: Path
    home: Path
    phone: str
    user_id: str = ""

    def options(self) -> list[str]:
        return ["--server", self.server, "--home", str(self.home), "--phone", self.phone]

    def code_command(self) -> str:
        return f"{shlex.quote(procs.TIDINGS)} code {{phone}} --data-dir {self.data_dir}"

    async def run(self, *args: str, ok: bool = True, timeout: float = 40.0) -> tuple[str, str]:
        """Run ``tidings *args`` for this user; returns (stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            procs.TIDINGS,
            *args,
            *self.options(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        if ok:
            assert process.returncode == 0, f"tidings {args} exited {process.returncode}: {err!r}"
        else:
            assert process.returncode != 0, f"tidings {args} should have failed: {out!r}"
        return out.decode(), err.decode()

    async def register(self) -> str:
        out, _ = await self.run("register", "--code-command", self.code_command())
        self.user_id = out.strip()
        assert re.fullmatch(r"[0-9a-f-]{36}", self.user_id), out
        return self.user_id

    async def inbox_until(
        self, done: Callable[[list[list[str]]], bool], timeout: float = 20.0
    ) -> list[list[str]]:
        """Run ``inbox`` until the messages received so far satisfy ``done`` (an accepted
        send may still be on its way to the device inbox). Rows are the tab fields."""
        rows: list[list[str]] = []
        deadline = time.monotonic() + timeout
        while True:
            out, _ = await self.run("inbox")
            rows += [line.split("\t") for line in out.splitlines()]
            if done(rows):
                return rows
            assert time.monotonic() < deadline, f"{self.phone} only received {rows}"
            await asyncio.sleep(0.3)


def texts(rows: list[list[str]]) -> list[str]:
    return [row[4] for row in rows]


@contextlib.asynccontextmanager
async def platform(tmp_path: Path) -> AsyncIterator[Callable[[str], User]]:
    data = tmp_path / "data"
    async with procs.running(["up"], data, tmp_path / "tidings.log") as proc:

        def user(name: str) -> User:
            return User(proc.url, data, tmp_path / name, new_phone())

        yield user


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
            *(u.inbox_until(lambda rows: bool(rows)) for u in (ben, cat, dan))
        ):
            assert rows == [[hello, ann.user_id, conversation, "text", "hello group"]]

        await ann.run("group", "remove", group, dan.phone)
        out, _ = await ann.run("group", "send", group, "dan is gone")
        gone = out.strip()
        for rows in await asyncio.gather(
            *(u.inbox_until(lambda rows: bool(rows)) for u in (ben, cat))
        ):
            assert rows == [[gone, ann.user_id, conversation, "text", "dan is gone"]]

        # dan's envelopes arrive in order: once a later direct message reached him, the
        # group message would have too, had the server routed it to him.
        await ann.run("send", "--to", dan.user_id, "a word after the group message")
        rows = await dan.inbox_until(lambda rows: "a word after the group message" in texts(rows))
        assert "dan is gone" not in texts(rows)
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


@dataclass
class Interactive:
    """A running ``tidings chat``: write lines to its stdin, wait for lines it prints."""

    process: asyncio.subprocess.Process
    unread: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first printed line not matched before that matches ``pattern``."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                for i, line in enumerate(self.unread):
                    if match := re.search(pattern, line):
                        del self.unread[i]
                        return match
                raw = await self.process.stdout.readline()
                assert raw, f"chat exited; it printed:\n{''.join(self.printed)}"
                self.printed.append(raw.decode())
                self.unread.append(raw.decode())


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
