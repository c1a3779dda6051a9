"""The outbox: texts sent while the server is down wait on the device and go out once,
in order, when it is back (``tidings send`` and ``tidings chat``, real processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import procs
from cli_support import User, chatting, texts
from harness import new_phone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_texts_typed_offline_arrive_once_in_order_after_restart(tmp_path: Path) -> None:
    data, port = tmp_path / "data", procs.free_port()
    log = tmp_path / "tidings.log"
    url = f"http://127.0.0.1:{port}"
    alice = User(url, data, tmp_path / "alice", new_phone())
    bob = User(url, data, tmp_path / "bob", new_phone())
    async with procs.running(["up"], data, log, port=port):
        await asyncio.gather(alice.register(), bob.register())
        await alice.run("send", "--to", bob.phone, "before")  # alice now knows bob's number
        await bob.inbox_until(lambda rows: len(rows) == 1)

    # Down: `send` queues (a number written to before needs no directory lookup)...
    out, err = await alice.run("send", "--to", bob.phone, "one")
    assert out.strip() == "1"
    assert "queued (1 waiting" in err
    assert "outbox flush" in err
    out, _ = await alice.run("send", "--to", bob.phone, "two")
    assert out.strip() == "2"
    out, _ = await alice.run("outbox")
    assert [line.split("\t")[1:] for line in out.splitlines()] == [
        [bob.user_id, "one"],
        [bob.user_id, "two"],
    ]
    # ...and so does the chat, which says it is offline, then back.
    async with chatting(alice, "--to", bob.phone) as chat:
        await chat.expect(r"^offline: ")
        await chat.say("three")
        await chat.expect(r"^queued \(3 waiting\)")
        async with procs.running(["up"], data, log, port=port):
            await chat.expect(r"^back online; 3 queued message\(s\) sent", timeout=40)
            await chat.say("four")
            await chat.expect(r"^sent ")
            rows = await bob.inbox_until(lambda rows: len(rows) >= 4)
            out, _ = await bob.run("inbox")  # anything sent twice would show up here
            rows += [line.split("\t") for line in out.splitlines()]
            assert texts(rows) == ["one", "two", "three", "four"]
            out, _ = await alice.run("outbox")
            assert out == ""

    # Queued by `send` while down, sent by a chat opened once the server is back.
    out, _ = await alice.run("send", "--to", bob.phone, "five")
    assert out.strip() == "1"
    async with procs.running(["up"], data, log, port=port), chatting(alice) as chat:
        await chat.expect(r"^online; 1 queued message\(s\) sent")
        rows = await bob.inbox_until(lambda rows: len(rows) >= 1)
        assert texts(rows) == ["five"]
