"""Linked devices, backups and one connection per device, from the real ``tidings`` CLI:
``link`` on the new device, ``devices approve`` on the primary, ``devices`` and
``devices unlink``, ``backup export|import``, and ``inbox`` told (not knocking the
chat offline) when ``chat`` holds the socket."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import procs
from cli_support import User, chatting, platform, texts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def _link(primary: User, home: Path) -> User:
    laptop = User(primary.server, primary.data_dir, home, primary.phone, primary.user_id)
    process = await asyncio.create_subprocess_exec(
        procs.TIDINGS, "link", "--name", "laptop", *laptop.options(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        request = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert request.startswith("tidings-link-request:1:"), request
        _, err = await primary.run("devices", "approve", "not-a-code", ok=False)
        assert "not a link code" in err
        _, err = await primary.run("devices", "approve", request)
        assert "approved" in err
        out, err = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, err
        assert out.decode().strip() == "2"
        assert f"device 2 of {primary.phone}" in err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return laptop


async def test_link_list_unlink_and_a_backup_restored(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await asyncio.gather(alice.register(), bob.register())
        laptop = await _link(alice, tmp_path / "laptop")

        out, _ = await alice.run("devices")
        rows = [line.split("\t") for line in out.splitlines()]
        assert [(r[0], r[2], r[4:]) for r in rows] == [
            ("1", "primary", ["this device"]),
            ("2", "linked", []),
        ]
        assert rows[1][1] == "laptop"
        _, err = await laptop.run("devices", "approve", "tidings-link-request:1:x", ok=False)
        assert "not a link code" in err

        await bob.run("send", "--to-phone", alice.phone, "to both devices")
        for device in (alice, laptop):
            rows = await device.inbox_until(lambda rows: bool(rows))
            assert texts(rows) == ["to both devices"]

        # A backup: a passphrase from a file, never on the command line.
        phrase = tmp_path / "phrase"
        phrase.write_text("correct horse battery\n")
        wrong = tmp_path / "wrong"
        wrong.write_text("incorrect horse\n")
        backup = tmp_path / "alice.backup"
        await alice.run("backup", "export", str(backup), "--passphrase-file", str(phrase))
        assert backup.stat().st_mode & 0o777 == 0o600
        _, err = await alice.run(
            "backup", "export", str(backup), "--passphrase-file", str(phrase), ok=False
        )
        assert "exists" in err
        restored = User(alice.server, alice.data_dir, tmp_path / "restored", alice.phone)
        _, err = await restored.run(
            "backup", "import", str(backup), "--passphrase-file", str(wrong), ok=False
        )
        assert "wrong passphrase" in err
        assert not (restored.home / f"{alice.phone}.db").exists()
        stranger = User(alice.server, alice.data_dir, tmp_path / "restored", bob.phone)
        _, err = await stranger.run(
            "backup", "import", str(backup), "--passphrase-file", str(phrase), ok=False
        )
        assert f"a backup of {alice.phone}, not {bob.phone}" in err
        await restored.run("backup", "import", str(backup), "--passphrase-file", str(phrase))
        out, _ = await restored.run("history")
        assert texts([line.split("\t") for line in out.splitlines()]) == ["to both devices"]

        # The primary unlinks the laptop: it is signed out.
        await alice.run("devices", "unlink", "2")
        out, _ = await alice.run("devices")
        assert [line.split("\t")[0] for line in out.splitlines()] == ["1"]
        await laptop.run("inbox", ok=False)


async def test_inbox_does_not_knock_an_open_chat_offline(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await asyncio.gather(alice.register(), bob.register())
        async with chatting(alice, "--to", bob.phone) as chat:
            await chat.expect(rf"talking to {re.escape(bob.phone)}")
            _, err = await alice.run("inbox", ok=False)
            assert re.search(r"tidings chat \(pid \d+\) holds this device's connection", err)
            # A send from another process shares the store with the chat safely.
            await alice.run("send", "--to", bob.user_id, "sent beside the chat")
            await bob.run("send", "--to", alice.user_id, "still reaches the chat")
            await chat.expect(r"^< .*: still reaches the chat$")
            await chat.say("/quit")
            await chat.expect("^bye$")
        assert texts(await bob.inbox_until(lambda rows: bool(rows))) == ["sent beside the chat"]
        out, _ = await alice.run("inbox")  # the chat is gone: inbox holds the socket now
        assert out == ""
