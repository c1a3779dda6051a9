"""``tidings chat`` on a terminal: prompt_toolkit's input line under the conversation.

Only the terminal layer differs from the line-based :class:`~tidings.client.chat.Chat`:
lines typed here go through the same :meth:`Chat.handle` (so every command works the
same), and what it prints goes through ``patch_stdout``, which redraws the input line
below each printed line instead of writing into it. Printed lines stay in the
terminal's own scrollback. A bottom bar shows the open conversation, its peer's
presence, unread counts elsewhere and who is typing (``chat_status`` decides the text).

Keys: Enter sends; Esc then Enter (Alt-Enter in most terminals) starts a new line; a
paste arrives as one bracketed paste, newlines included, and is sent as one message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout

from tidings.client.account import label
from tidings.client.chat import Chat, _either
from tidings.client.chat_status import PeersTyping, Presence, TypingThrottle, status_text
from tidings.client.http import ApiError
from tidings.client.sdk import Client, Event

TICK_S = 1.0
"""How often the typing pause is checked and the bar redrawn (presence ages, typing
indicators expire)."""


def _keys() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        # Enter sends; a message of several lines needs another key for its breaks.
        event.current_buffer.insert_text("\n")

    return keys


class TerminalChat(Chat):
    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.unread: Counter[str] = Counter()
        """Messages received per conversation while it was not open."""
        self.presence: dict[str, Presence] = {}
        self.peers = PeersTyping()
        self.throttle = TypingThrottle()
        self._peer_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.session: PromptSession[str] = PromptSession(
            "> ",
            key_bindings=_keys(),
            bottom_toolbar=self.status,
            refresh_interval=TICK_S,
        )
        self.session.default_buffer.on_text_changed += self._edited

    # the terminal layer -----------------------------------------------------------
    async def run(self, args: argparse.Namespace) -> int:
        with patch_stdout():
            try:
                return await super().run(args)
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start_input(self) -> None:
        self._spawn(self._read_prompt())
        self._spawn(self._tick())
        self._spawn(self._follow_presence())

    async def _read_prompt(self) -> None:
        line: str | None = ""
        try:
            while line is not None:
                try:
                    line = await self.session.prompt_async()
                except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C: leave
                    line = None
                self._typing_done(self.open)
                self.lines.put_nowait(line)
        finally:
            if line is not None:  # the terminal failed: end the chat rather than hang
                self.lines.put_nowait(None)

    def status(self) -> str:
        """The bottom bar's text, from the current state."""
        now = time.time()
        unread = {label(self.client, c): n for c, n in self.unread.items() if c != self.open}
        return status_text(
            label(self.client, self.open) if self.open else None,
            self.presence.get(self.open) if self.open else None,
            unread,
            self.peers.in_conversation(self.open, now),
            now,
        )

    def _redraw(self) -> None:
        self.session.app.invalidate()  # a no-op unless the prompt is up

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    # typing sent ------------------------------------------------------------------
    def _edited(self, buffer: Buffer) -> None:
        text = buffer.text
        if self.open is None or not text.strip() or text.startswith("/"):
            return  # commands are not messages: nobody needs to see them typed
        if self.throttle.key(time.monotonic()):
            self._spawn(self._send_typing(self.open, True))

    def _typing_done(self, conversation: str | None) -> None:
        if self.throttle.done() and conversation is not None:
            self._spawn(self._send_typing(conversation, False))

    async def _send_typing(self, conversation: str, started: bool) -> None:
        # Best effort: typing is ephemeral, and refused for people not talked with yet.
        with contextlib.suppress(ApiError):
            await self.client.typing(conversation, started)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if self.throttle.tick(time.monotonic()) and self.open is not None:
                self._spawn(self._send_typing(self.open, False))

    # presence and unread counts ---------------------------------------------------
    async def _open(self, conversation: str) -> None:
        if conversation != self.open:
            self._typing_done(self.open)
        await super()._open(conversation)
        self.unread.pop(conversation, None)
        self._peer_changed.set()
        self._redraw()

    async def _follow_presence(self) -> None:
        """Follow the presence of the open 1:1 conversation's peer, again after each
        reconnection (the server forgets a socket's subscriptions with it)."""
        live = self.client.live
        while True:
            await live.connected.wait()
            self._peer_changed.clear()
            peer = self.open if self.open and not self.open.startswith("group:") else None
            if peer is not None:
                with contextlib.suppress(ApiError):
                    for seen in await self.client.subscribe_presence([peer]):
                        self.presence[peer] = _presence(seen)
                    self._redraw()
            await _either(live.disconnected, self._peer_changed)
            if peer is not None and live.connected.is_set():
                with contextlib.suppress(ApiError):
                    await self.client.unsubscribe_presence([peer])

    def _event_line(self, event: Event) -> str | None:
        now = time.time()
        mine = event.sender_user == self.client.user_id
        if event.kind == "typing":
            if not mine:
                state = str(event.extra.get("typing", ""))
                who = self._who(event.sender_user)
                self.peers.event(event.conversation, who, state, now)
                self._redraw()
            return None  # shown in the bar, not as a line
        if event.kind == "presence":
            self.presence[event.conversation] = _presence(event.extra)
            self._redraw()
            return None
        if event.kind in ("text", "file") and not mine:
            self.peers.stopped(event.conversation, self._who(event.sender_user))
            if event.conversation != self.open:
                self.unread[event.conversation] += 1
            self._redraw()
        return super()._event_line(event)


def _presence(body: dict[str, Any]) -> Presence:
    seen = body.get("last_seen")
    return Presence(
        online=bool(body.get("online")),
        last_seen=float(seen) if seen is not None else None,
        visible=bool(body.get("visible", True)),
    )
