"""The outbox on the command line with files and message features: `send-file`,
`react`, `send --reply-to` and the chat's `/send-file` typed while the server is down
are queued (listed and droppable with `tidings outbox`), and go out once, in order,
when it is back; the recipient decrypts the file to the bytes that were sent (real
processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

import procs
from cli_support import User, chatting
from harness import new_phone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_files_and_reactions_typed_offline_arrive_once_in_order(tmp_path: Path) -> None:
    data, port = tmp_path / "data", procs.free_port()
    log = tmp_path / "tidings.log"
    url = f"http://127.0.0.1:{port}"
    alice = User(url, data, tmp_path / "alice", new_phone())
    bob = User(url, data, tmp_path / "bob", new_phone())
    photo, junk = tmp_path / "photo.bin", tmp_path / "junk.txt"
    original = bytes(range(256)) * 40
    photo.write_bytes(original)
    junk.write_text("never mind")
    async with procs.running(["up"], data, log, port=port):
        await alice.register()
        await bob.register()
        out, _ = await alice.run("send", "--to", bob.phone, "before")
        before = out.strip()
        await bob.inbox_until(lambda rows: len(rows) == 1)

    # Down: each is queued after the last, and the file is read now.
    out, err = await alice.run("send-file", "--to", bob.phone, str(photo))
    assert out.strip() == "1"
    assert "queued (1 waiting" in err
    photo.unlink()
    out, _ = await alice.run("react", before, "👍")
    assert out.strip() == "2"
    out, _ = await alice.run("send", "--to", bob.phone, "--reply-to", before, "re")
    assert out.strip() == "3"
    async with chatting(alice, "--to", bob.phone) as chat:  # the chat queues files too
        await chat.expect(r"^offline: ")
        await chat.say(f"/send-file {junk}")
        await chat.expect(r"^queued \(4 waiting\)")
    out, _ = await alice.run("outbox")
    rows = [line.split("\t") for line in out.splitlines()]
    assert [row[1:] for row in rows] == [
        [bob.user_id, f"[file, {len(original)} bytes] photo.bin"],
        [bob.user_id, f"[reaction to {before}] 👍"],
        [bob.user_id, f"[reply to {before}] re"],
        [bob.user_id, "[file, 10 bytes] junk.txt"],
    ]
    await alice.run("outbox", "drop", rows[3][0])

    async with procs.running(["up"], data, log, port=port):
        out, _ = await alice.run("outbox", "flush")
        assert [line.split("\t")[0] for line in out.splitlines()] == [r[0] for r in rows[:3]]
        got = await bob.inbox_until(lambda rows: len(rows) >= 3)
        out, _ = await bob.run("inbox")  # anything sent twice would show up here
        got += [line.split("\t") for line in out.splitlines()]
        assert [(row[3], row[4]) for row in got] == [
            ("file", "photo.bin"),
            ("reaction", "👍"),
            ("text", '↪ replying to "before" re'),
        ]
        saved = tmp_path / "saved.bin"
        await bob.run("fetch-file", got[0][0], "--out", str(saved))
        assert saved.read_bytes() == original
