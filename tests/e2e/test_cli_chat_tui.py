"""``tidings chat`` on a terminal: the real CLI in a pseudo-terminal against a real
gateway. Its peer runs the line-based chat through pipes, which shows what arrives."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import procs
from cli_support import Interactive, User, chatting, platform
from pty_support import Terminal, terminal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_terminal_chat_keeps_the_input_line_and_shows_the_state(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob, carol = user("alice"), user("bob"), user("carol")
        await asyncio.gather(alice.register(), bob.register(), carol.register())
        # They talked before: typing goes only to people one exchanged messages with.
        await alice.run("send", "--to", bob.phone, "before")
        await bob.inbox_until(lambda rows: len(rows) == 1)

        async with chatting(bob, "--to", alice.phone) as bob_chat:
            # Once bob's chat put alice in his contacts, she may see his presence.
            await bob_chat.expect(r"^type /help")
            async with terminal(procs.TIDINGS, "chat", *alice.options(), "--to", bob.phone) as term:
                await _conversation(term, bob_chat, alice, bob, carol)


async def _conversation(
    term: Terminal, bob_chat: Interactive, alice: User, bob: User, carol: User
) -> None:
    """Alice's terminal chat, open on bob, while bob chats through pipes."""
    at = await term.expect(r"type /help for commands")
    # The bar names the open conversation and, bob being connected, his presence.
    # (The screen is redrawn by differences: a change may be all that is written.)
    await term.expect(rf"{re.escape(bob.phone)}", since=at)
    await term.expect(r"\(online\)", since=at)

    term.type("hello from the terminal")
    await bob_chat.expect(r"is typing$")  # sent while typing, before Enter
    term.type("\r")
    await bob_chat.expect(r"^< .*: hello from the terminal$")

    # Half a line typed when bob's message arrives: it is shown above the input
    # line, the typed text is drawn again under it and is still there to finish.
    term.type("half a li")
    at = await term.expect(r"> half a li")
    await bob_chat.say("a message while alice types")
    at = await term.expect(r"< .*: a message while alice types", since=at)
    await term.expect(r"> half a li", since=at)
    term.type("ne\r")
    await bob_chat.expect(r"^< .*: half a line$")

    # A message for another conversation counts as unread in the bar (carol is
    # shown by her id: alice never looked up her number).
    await carol.run("send", "--to", alice.phone, "psst")
    await term.expect(rf"unread: {carol.user_id} 1")

    # A multi-line paste is one message: bob sees one "< " line and its rest.
    term.paste("first line\nsecond line\nthird line")
    term.type("\r")
    await bob_chat.expect(r"^< .*: first line$")
    await bob_chat.expect(r"^second line$")
    await bob_chat.expect(r"^third line$")
    # Esc-Enter starts a new line without sending.
    term.type("top\x1b\rbottom\r")
    await bob_chat.expect(r"^< .*: top$")
    await bob_chat.expect(r"^bottom$")

    term.type(f"/to {carol.phone}\r")
    await term.expect(rf"talking to {re.escape(carol.phone)}")
    term.type("/quit\r")
    await term.expect(r"bye")
    assert await asyncio.wait_for(term.process.wait(), 20) == 0


async def test_plain_forces_the_line_based_chat_on_a_terminal(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice = user("alice")
        await alice.register()
        async with terminal(procs.TIDINGS, "chat", *alice.options(), "--plain") as term:
            await term.expect(r"type /help for commands")
            term.type("/quit\n")
            await term.expect(r"bye")
            assert await asyncio.wait_for(term.process.wait(), 20) == 0
            assert "no conversation open" not in term.screen  # no status bar


async def test_typing_in_one_terminal_chat_is_shown_in_the_others_bar(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await asyncio.gather(alice.register(), bob.register())
        await alice.run("send", "--to", bob.phone, "before")
        await bob.inbox_until(lambda rows: len(rows) == 1)
        async with (
            terminal(procs.TIDINGS, "chat", *alice.options(), "--to", bob.phone) as alice_term,
            terminal(procs.TIDINGS, "chat", *bob.options(), "--to", alice.phone) as bob_term,
        ):
            await bob_term.expect(r"type /help for commands")
            at = await alice_term.expect(r"type /help for commands")
            bob_term.type("let me think")
            at = await alice_term.expect(r"is typing…", since=at)
            bob_term.type("\r")  # sent: the indicator goes with the message
            at = await alice_term.expect(r"< .*: let me think", since=at)
            # The bar, drawn again in full under the message, ends with his name (and
            # presence, if he already let her see it): nobody is typing now.
            bar = rf"{re.escape(bob.phone)}( \(online\))? {{20,}}"
            await alice_term.expect(bar, since=at)
            bob_term.type("\x04")  # Ctrl-D leaves, as end of input does
            await bob_term.expect(r"bye")
            assert await asyncio.wait_for(bob_term.process.wait(), 20) == 0
