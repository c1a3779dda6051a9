"""The terminal chat's decisions, kept free of I/O so they are tested on plain values:
the status bar's text, and when to send typing signals (on an injected clock).

The server rate-limits typing frames (about 2 per second), and a peer only needs to
know that someone is typing, not every key: ``started`` is repeated at most every
:data:`TYPING_REPEAT_S` while keys keep coming (the peer's indicator expires without
it), and ``stopped`` follows :data:`TYPING_PAUSE_S` without a key, or a send.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

TYPING_REPEAT_S = 4.0
"""Re-send ``started`` this often while the user keeps typing."""
TYPING_PAUSE_S = 5.0
"""Send ``stopped`` after this long without a key."""
TYPING_SHOWN_S = 8.0
"""Show a peer as typing this long after their last ``started`` (a ``stopped`` may be
lost with a dropped connection; their repeats keep it shown while they type)."""


@dataclass(frozen=True)
class Presence:
    """What the server said about a peer: online, or when last seen (epoch seconds)."""

    online: bool
    last_seen: float | None = None
    visible: bool = True


def presence_text(presence: Presence | None, now: float) -> str:
    """``online``, ``last seen 5 min ago``, ... or empty when unknown or hidden."""
    if presence is None or not presence.visible:
        return ""
    if presence.online:
        return "online"
    if presence.last_seen is None:
        return "offline"
    ago = max(0.0, now - presence.last_seen)
    if ago < 60:
        return "last seen just now"
    if ago < 3600:
        return f"last seen {int(ago // 60)} min ago"
    if ago < 86400:
        return f"last seen {int(ago // 3600)} h ago"
    return "last seen " + time.strftime("%Y-%m-%d", time.localtime(presence.last_seen))


def typing_text(names: list[str]) -> str:
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing…"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} are typing…"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more are typing…"


def status_text(
    conversation: str | None,
    presence: Presence | None,
    unread: dict[str, int],
    typing: list[str],
    now: float,
) -> str:
    """The bottom bar: the open conversation and its peer's presence, unread counts of
    the other conversations (by their labels), and who is typing in the open one."""
    parts = []
    if conversation is None:
        parts.append("no conversation open (/to, /group)")
    else:
        seen = presence_text(presence, now)
        parts.append(f"{conversation} ({seen})" if seen else conversation)
    waiting = [f"{who} {count}" for who, count in sorted(unread.items()) if count > 0]
    if waiting:
        parts.append("unread: " + ", ".join(waiting))
    if typing:
        parts.append(typing_text(typing))
    return " | ".join(parts)


class TypingThrottle:
    """When to send ``started`` and ``stopped`` for the user's own typing. Each method
    takes the current time and answers whether to send now."""

    def __init__(self) -> None:
        self.started_at: float | None = None
        """When ``started`` was last sent; None while the peer thinks we are idle."""
        self.last_key: float = 0.0

    def key(self, now: float) -> bool:
        """The input line changed: send ``started``?"""
        self.last_key = now
        if self.started_at is None or now - self.started_at >= TYPING_REPEAT_S:
            self.started_at = now
            return True
        return False

    def tick(self, now: float) -> bool:
        """Called now and then: send ``stopped`` (a pause after typing)?"""
        if self.started_at is not None and now - self.last_key >= TYPING_PAUSE_S:
            self.started_at = None
            return True
        return False

    def done(self) -> bool:
        """The line was sent or cleared (or the conversation changed): send ``stopped``?"""
        was_typing = self.started_at is not None
        self.started_at = None
        return was_typing


class PeersTyping:
    """Who is typing where, from received typing events, expiring on their own."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}

    def event(self, conversation: str, who: str, state: str, now: float) -> None:
        if state == "started":
            self._until[(conversation, who)] = now + TYPING_SHOWN_S
        else:
            self._until.pop((conversation, who), None)

    def stopped(self, conversation: str, who: str) -> None:
        """They sent a message: they are not typing it any more."""
        self._until.pop((conversation, who), None)

    def in_conversation(self, conversation: str | None, now: float) -> list[str]:
        return sorted(
            who
            for (where, who), until in self._until.items()
            if where == conversation and until > now
        )
