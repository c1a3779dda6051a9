"""Safety numbers and identity changes through the real CLI: ``tidings verify`` on both
sides, then a reinstall of a verified contact seen from an open ``tidings chat``; and the
local state private to its user."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import stat
from pathlib import Path

import pytest

import procs
from cli_support import Interactive, User, platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
DIGITS = re.compile(r"^(\d{5} \d{5} \d{5} \d{5})$", re.MULTILINE)


def _safety_digits(out: str) -> str:
    lines = DIGITS.findall(out)
    assert len(lines) == 3, out
    return " ".join(lines)


def _registration_id(user: User) -> str:
    db = sqlite3.connect(user.home / f"{user.phone}.db")
    try:
        (value,) = db.execute("SELECT value FROM kv WHERE key='registration_id'").fetchone()
    finally:
        db.close()
    return bytes(value).decode()


async def _chat_digits(chat: Interactive) -> str:
    """The three lines of digits ``/verify`` printed, as one string."""
    return " ".join([(await chat.expect(DIGITS.pattern)).group(1) for _ in range(3)])


async def _reinstall(user: User, home: Path) -> User:
    """The same number registered from an empty home: a new identity key. Again if the
    random registration id repeats the old one (1 in 16380): the server tells
    re-registrations apart by it."""
    again = User(user.server, user.data_dir, home, user.phone)
    while True:
        await again.register()
        if _registration_id(again) != _registration_id(user):
            return again
        (home / f"{user.phone}.db").unlink()  # pragma: no cover - 1 in 16380


async def test_verify_on_both_sides_then_a_reinstall_blocks_sending_until_accepted(
    tmp_path: Path,
) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await asyncio.gather(alice.register(), bob.register())
        # Keys and history are for the account's user only.
        assert stat.S_IMODE(bob.home.stat().st_mode) == 0o700
        assert stat.S_IMODE((bob.home / f"{bob.phone}.db").stat().st_mode) == 0o600

        out, _ = await alice.run("verify", bob.phone)
        assert f"safety number with {bob.phone} (not verified)" in out
        seen_by_alice = _safety_digits(out)
        out, _ = await bob.run("verify", alice.phone)
        assert _safety_digits(out) == seen_by_alice

        _, err = await bob.run("verify", alice.phone, "--compare", "12345 " * 12, ok=False)
        assert "not the safety number" in err
        out, _ = await bob.run("verify", alice.phone, "--compare", seen_by_alice)
        assert f"safety number with {alice.phone} (verified)" in out

        process = await asyncio.create_subprocess_exec(
            procs.TIDINGS,
            "chat",
            *bob.options(),
            "--to",
            alice.phone,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        chat = Interactive(process)
        a_phone = re.escape(alice.phone)
        try:
            await chat.expect(rf"talking to {a_phone}")
            await chat.say("/verify")
            await chat.expect(r"\(verified\)")
            assert await _chat_digits(chat) == seen_by_alice
            await chat.say("before the reinstall, it's end-to-end")
            await chat.expect(r"^sent ")
            await chat.say("/to 5550002")  # no + and country code: said before any lookup
            await chat.expect(r"^error: '5550002' is not an E\.164 number.*\+15550002")
            for words in ("end-to-end", "it's", "reinstall,", "NOT"):
                await chat.say(f"/search {words}")
            for _ in range(3):
                await chat.expect(rf"{a_phone}: .*me: before the reinstall, it's end-to-end")

            alice_again = await _reinstall(alice, tmp_path / "alice-new-phone")
            await alice_again.run("send", "--to-phone", bob.phone, "it is me, new phone")
            await chat.expect(rf"^! the safety number with {a_phone} changed .*/verify accept")
            await chat.expect(rf"^< {a_phone}: it is me, new phone$")

            await chat.say("are you really alice?")
            await chat.expect(r"^error: the safety number with .* nothing was sent")
            _, err = await bob.run("send", "--to-phone", alice.phone, "hello?", ok=False)
            assert "changed since you verified" in err

            await chat.say("/history")
            await chat.expect(r"me: before the reinstall, it's end-to-end \(")
            await chat.expect(rf"! the safety number with {a_phone} changed$")
            await chat.say("/verify")
            await chat.expect(r"\(CHANGED since you verified it")
            seen_by_bob = await _chat_digits(chat)
            out, _ = await alice_again.run("verify", bob.phone)
            assert _safety_digits(out) == seen_by_bob != seen_by_alice

            await chat.say("/verify accept")
            await chat.expect(r"\(not verified\)")
            await chat.say("welcome back")
            await chat.expect(r"^sent ")
            rows = await alice_again.inbox_until(
                lambda rows: any(row[4] == "welcome back" for row in rows)
            )
            assert [row[4] for row in rows] == ["welcome back"]
            await chat.say("/quit")
            await chat.expect("^bye$")
            assert [line for line in chat.printed if "search" in line] == []  # no errors
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

        # Not verified any more: another reinstall is met by a send, which goes out
        # (to the new key) with a warning.
        third = await _reinstall(alice_again, tmp_path / "alice-third-phone")
        _, err = await bob.run("send", "--to-phone", alice.phone, "third time")
        assert f"warning: the safety number with {alice.phone} changed" in err
        rows = await third.inbox_until(lambda rows: bool(rows))
        assert [row[4] for row in rows] == ["third time"]
