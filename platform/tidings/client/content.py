"""Message features as encrypted content: replies, reactions, edits, deletes, timers.

They travel inside the ciphertext like any text, so the server routes them without
knowing what they are (no new server field). Each is a small JSON object with a type::

    {"t": "text", "text": TEXT}
    {"t": "reply", "text": TEXT, "reply_to": SERVER_ID, "excerpt": QUOTE}
    {"t": "reaction", "target": SERVER_ID, "emoji": EMOJI}   # "" removes one's reaction
    {"t": "edit", "target": SERVER_ID, "text": NEW_TEXT}
    {"t": "delete", "target": SERVER_ID}                   # for everyone
    {"t": "timer", "seconds": N}                            # disappearing messages, 0 = off

A text or reply sent while a timer is on carries ``"ttl": N`` so every receiver expires
it as its sender meant, whatever the receiver believed the timer to be.

Every receiving client enforces the rules (:func:`change_refusal`): a sender that is not
the original author, or an edit or delete past :data:`EDIT_WINDOW_S`, is ignored. This
module is pure: it builds, decodes, checks and describes; the store work is in
:mod:`tidings.client.effects`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

EDIT_WINDOW_S = 24 * 3600
"""How long after sending a message its author may edit or delete it for everyone.
Past it the message is part of the record people rely on (and their replies quote it);
the sender's client refuses, and receivers ignore a late change (judged by the server's
timestamps, which every device sees alike, not by anyone's own clock)."""
EXCERPT_CHARS = 60
"""A reply quotes the start of the message it answers: enough to recognise it."""
MAX_EMOJI_CHARS = 16
"""An emoji may be several code points (skin tones, flags, ZWJ sequences), not a text."""
MAX_TIMER_S = 4 * 7 * 86400
"""Four weeks, like other messengers' longest disappearing-messages setting."""

TEXT, REPLY, REACTION, EDIT, DELETE, TIMER = "text", "reply", "reaction", "edit", "delete", "timer"
CONTROL = (REACTION, EDIT, DELETE, TIMER)
"""Content that changes the history rather than adding a message to it."""


class BadContent(ValueError):
    """Content that is not well-formed (a received one is ignored, never shown)."""


class Refused(ValueError):
    """A change this device will not make or send (not yours, too late, unknown)."""


# building ----------------------------------------------------------------------------
def text(body: str, ttl: int = 0) -> dict[str, Any]:
    return _with_ttl({"t": TEXT, "text": body}, ttl)


def reply(body: str, reply_to: str, quoted: str, ttl: int = 0) -> dict[str, Any]:
    payload = {"t": REPLY, "text": body, "reply_to": reply_to, "excerpt": excerpt(quoted)}
    return _with_ttl(payload, ttl)


def reaction(target: str, emoji: str) -> dict[str, Any]:
    return check({"t": REACTION, "target": target, "emoji": emoji.strip()})


def edit(target: str, body: str) -> dict[str, Any]:
    return check({"t": EDIT, "target": target, "text": body})


def delete(target: str) -> dict[str, Any]:
    return {"t": DELETE, "target": target}


def timer(seconds: int) -> dict[str, Any]:
    return check({"t": TIMER, "seconds": seconds})


def _with_ttl(payload: dict[str, Any], ttl: int) -> dict[str, Any]:
    return {**payload, "ttl": ttl} if ttl > 0 else payload


def excerpt(quoted: str) -> str:
    """The start of a quoted message on one line, ``…`` where it was cut."""
    flat = " ".join(quoted.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


# reading -----------------------------------------------------------------------------
def decode(plaintext: bytes) -> dict[str, Any]:
    """The content of a decrypted plaintext. Anything that is not a typed JSON object
    (a plain-text message from an older or simpler client) reads as a text."""
    try:
        payload = json.loads(plaintext)
    except (UnicodeDecodeError, json.JSONDecodeError):
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("t"), str):
        return payload
    return {"t": TEXT, "text": plaintext.decode("utf-8", errors="replace")}


def check(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A control or reply payload's shape, checked; raises :class:`BadContent`."""
    kind = payload.get("t")
    out = dict(payload)
    if kind in (REACTION, EDIT, DELETE) and not _nonempty_str(payload.get("target")):
        raise BadContent(f"a {kind} names the message it is about")
    if kind == REACTION:
        emoji = payload.get("emoji")
        if not isinstance(emoji, str) or len(emoji) > MAX_EMOJI_CHARS or not _printable(emoji):
            raise BadContent("a reaction is one emoji (or empty, to remove it)")
    elif kind == EDIT and not _nonempty_str(payload.get("text")):
        raise BadContent("an edit gives the new text (delete the message to remove it)")
    elif kind == TIMER:
        seconds = payload.get("seconds")
        if type(seconds) is not int or not 0 <= seconds <= MAX_TIMER_S:
            raise BadContent(f"a timer is 0 (off) to {MAX_TIMER_S} seconds")
    elif kind == REPLY:
        if not _nonempty_str(payload.get("reply_to")) or not isinstance(
            payload.get("excerpt"), str
        ):
            raise BadContent("a reply names the message it answers")
        out["excerpt"] = excerpt(str(payload["excerpt"]))
    return out


def ttl_of(payload: Mapping[str, Any]) -> int:
    """The disappearing-messages timer a message was sent under (0: keep it)."""
    ttl = payload.get("ttl", 0)
    return ttl if type(ttl) is int and 0 < ttl <= MAX_TIMER_S else 0


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _printable(value: str) -> bool:
    return not any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in value)


# rules ---------------------------------------------------------------------------------
def change_refusal(kind: str, author: str, sent_ms: int, changer: str, at_ms: int) -> str | None:
    """Why ``changer`` may not edit or delete (``kind``) a message ``author`` sent at
    ``sent_ms``, at ``at_ms``; None when they may. The same rule on both ends: the
    sender's client refuses, receivers ignore."""
    if changer != author:
        return f"only its sender may {kind} a message"
    if at_ms - sent_ms > EDIT_WINDOW_S * 1000:
        return f"a message can only be {kind}ed within {EDIT_WINDOW_S // 3600} h of sending"
    return None


def react(reactions: Mapping[str, str], reactor: str, emoji: str) -> dict[str, str]:
    """One reaction per reactor: a new one replaces theirs, an empty one removes it."""
    out = {k: v for k, v in reactions.items() if k != reactor}
    if emoji:
        out[reactor] = emoji
    return out


def expires_at(sent_ms: int, ttl_s: int) -> int | None:
    """When a message sent at ``sent_ms`` under a ``ttl_s`` timer disappears (None:
    never). Counted from sending (the server's timestamp), not reading: every device of
    both parties then removes it at the same moment without telling each other when
    they read it."""
    return sent_ms + ttl_s * 1000 if ttl_s > 0 else None


# describing ----------------------------------------------------------------------------
def summary(reactions: Mapping[str, str]) -> str:
    """``👍 2 ❤️`` : each emoji once, with its count when more than one person chose it."""
    counts: dict[str, int] = {}
    for emoji in reactions.values():
        counts[emoji] = counts.get(emoji, 0) + 1
    return " ".join(e if n == 1 else f"{e} {n}" for e, n in counts.items())


def duration(seconds: int) -> str:
    """``30s``, ``5m``, ``1h``, ``2d``; ``1h30m`` when it does not divide evenly."""
    if seconds <= 0:
        return "off"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def describe_timer(seconds: int, by: str) -> str:
    if seconds <= 0:
        return f"{by} turned disappearing messages off"
    return f"{by} set disappearing messages to {duration(seconds)}"


def decorate(body: str, extra: Mapping[str, Any]) -> str:
    """A stored message's text as people read it: the quote it answers, ``(edited)``,
    ``(deleted)`` and its reactions."""
    if extra.get("deleted"):
        return "(deleted)"
    line = body
    if extra.get("reply_to"):
        quoted = extra.get("excerpt", "")
        line = f'↪ replying to "{quoted}" {line}' if quoted else f"↪ replying to (deleted) {line}"
    if extra.get("edited"):
        line += " (edited)"
    reactions = extra.get("reactions")
    if isinstance(reactions, dict) and reactions:
        line += f" [{summary(reactions)}]"
    return line
