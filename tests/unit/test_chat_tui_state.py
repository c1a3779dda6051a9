"""The terminal chat's state from events, without a terminal or a server: what the bar
shows as messages, typing and presence arrive and conversations are opened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from tidings.client import names
from tidings.client.base import Event
from tidings.client.chat_tui import TerminalChat
from tidings.client.http import Tokens
from tidings.client.sdk import Client


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[TerminalChat]:
    client = Client("http://127.0.0.1:9", tmp_path / "me.db")  # never contacted
    client.api.tokens = Tokens("me", 1, "access", "refresh")
    names.remember(client.store, names.PHONES, "ann", "+15550001")
    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        yield TerminalChat(client)
    await client.close()


def _text(conversation: str, sender: str, text: str) -> Event:
    return Event("text", conversation, sender, 1, f"id-{text}", text)


async def test_messages_elsewhere_count_as_unread_until_opened(chat: TerminalChat) -> None:
    assert chat.status() == "no conversation open (/to, /group)"
    await chat._open("ann")
    assert chat.status() == "+15550001"
    assert chat._event_line(_text("ann", "ann", "hi")) == "< +15550001: hi"
    assert chat._event_line(_text("ben", "ben", "one")) == "< ben: one"
    chat._event_line(_text("ben", "ben", "two"))
    chat._event_line(_text("group:g", "cat", "all"))
    chat._event_line(_text("group:g", "me", "mine"))  # from my other device: seen
    assert chat.status() == "+15550001 | unread: ben 2, group g 1"
    await chat._open("ben")
    assert chat.status() == "ben | unread: group g 1"


async def test_presence_and_typing_of_the_open_conversation(chat: TerminalChat) -> None:
    await chat._open("ann")
    presence = {"user": "ann", "online": True, "last_seen": None}
    assert chat._event_line(Event("presence", "ann", "ann", 0, extra=presence)) is None
    typing = Event("typing", "ann", "ann", 1, extra={"typing": "started"})
    assert chat._event_line(typing) is None  # in the bar, not as a line
    assert chat.status() == "+15550001 (online) | +15550001 is typing…"
    chat._event_line(Event("typing", "ben", "ben", 1, extra={"typing": "started"}))
    assert chat.status().endswith("+15550001 is typing…")  # only the open conversation
    chat._event_line(_text("ann", "ann", "done"))  # her message ends her typing
    assert chat.status() == "+15550001 (online)"
    gone = {"user": "ann", "online": False, "last_seen": 0.0}
    chat._event_line(Event("presence", "ann", "ann", 0, extra=gone))
    assert chat.status().startswith("+15550001 (last seen ")
