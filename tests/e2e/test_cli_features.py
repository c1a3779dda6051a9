"""Message features through the real ``tidings`` CLI: ``send --reply-to``, ``react``,
``edit``, ``delete`` and ``timer`` beside a live ``tidings chat`` that uses ``/reply``,
``/react`` and ``/timer`` and shows what the other side changed."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from cli_support import chatting, platform, texts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_replies_reactions_edits_deletes_and_timers(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await asyncio.gather(alice.register(), bob.register())
        a_phone = re.escape(alice.phone)
        out, _ = await alice.run("send", "--to", bob.phone, "lunch at noon?")
        first = out.strip()
        await bob.inbox_until(lambda rows: bool(rows))

        async with chatting(bob, "--to", alice.phone) as chat:
            await chat.expect(r"^talking to")
            await chat.say(f"/reply {first} yes please")
            answer = (await chat.expect(r"^sent (\S+)$")).group(1)
            await chat.say(f"/react {first} 👍")
            await chat.expect(r"^reacted \S+$")
            await chat.say(f"/edit {first} hijacked")
            await chat.expect(r"^error: only its sender may edit a message$")

            rows = await alice.inbox_until(lambda rows: len(rows) >= 2)
            assert [r[3] for r in rows] == ["text", "reaction"]
            assert rows[0][0] == answer
            assert texts(rows) == ['↪ replying to "lunch at noon?" yes please', "👍"]

            await alice.run("edit", first, "lunch at one?")
            await chat.expect(rf"^\* {a_phone} edited a message: lunch at one\? \(edited\)$")
            _, err = await alice.run("edit", answer, "not mine", ok=False)
            assert "only its sender may edit a message" in err

            await alice.run("timer", "--to", bob.phone, "3600")
            await chat.expect(rf"^! {a_phone} set disappearing messages to 1h$")
            out, _ = await alice.run("send", "--to", bob.phone, "this one disappears")
            doomed = out.strip()
            await chat.expect(r"^< .*: this one disappears$")
            out, _ = await bob.run("history", "--json")
            stored = {m["server_id"]: m for m in map(json.loads, out.splitlines())}
            assert stored[doomed]["expires_at"] == stored[doomed]["timestamp"] + 3_600_000
            assert stored[first]["text"] == "lunch at one? (edited) [👍]"

            await chat.say("/timer 0")
            await chat.expect(r"^timer set: off \S+$")
            await alice.run("delete", first)
            await chat.expect(rf"^\* {a_phone} deleted a message \(deleted\)$")
            await chat.say("/history 5")
            await chat.expect(rf"^\d\d:\d\d {a_phone}: \(deleted\) {first}$")
            # The reply no longer quotes what was deleted.
            await chat.expect(r"^\d\d:\d\d me: ↪ replying to \(deleted\) yes please")

        rows = await alice.inbox_until(lambda rows: "turned" in " ".join(texts(rows)))
        assert texts(rows)[-1] == f"{bob.phone} turned disappearing messages off"
        out, _ = await alice.run("search", "lunch")
        assert out.strip() == ""
        _, err = await alice.run("timer", "--to", bob.phone, "soon", ok=False)
        assert "not a number of seconds" in err
