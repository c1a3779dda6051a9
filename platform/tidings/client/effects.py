"""What message-feature content does to the local history (rules in
:mod:`tidings.client.content`): keep messages with their expiry, apply reactions, edits,
deletes and timers, and sweep out disappearing messages.

The same functions run for content received and for content this device sent (once
the server answered with its timestamp), so both ends keep the same history.
"""

from __future__ import annotations

import logging
from typing import Any

from tidings.client import content, names
from tidings.client.base import Event
from tidings.client.store import LocalStore, StoredMessage

log = logging.getLogger("tidings.client")

TIMERS = "disappearing_timers"
"""kv key: conversation -> seconds, for the conversations with a timer on."""
NEXT_EXPIRY = "next_expiry_ms"
"""kv key: when the next disappearing message is due, so a sweep with nothing due (the
usual case, run on every delivery) costs one key read, not a scan of the history."""
CHANGEABLE = {content.EDIT: ("text",), content.DELETE: ("text", "file")}
"""Which stored kinds each change applies to (a file's name is not edited)."""


def timer(store: LocalStore, conversation: str) -> int:
    """The conversation's disappearing-messages timer in seconds (0: off)."""
    return int((store.get_json(TIMERS) or {}).get(conversation, 0))


def _set_timer(store: LocalStore, conversation: str, seconds: int) -> None:
    timers = {k: v for k, v in (store.get_json(TIMERS) or {}).items() if k != conversation}
    if seconds > 0:
        timers[conversation] = seconds
    store.put_json(TIMERS, timers)


def keep(
    store: LocalStore,
    server_id: str,
    conversation: str,
    sender: tuple[str, int],
    ts_ms: int,
    payload: dict[str, Any],
    status: str,
) -> StoredMessage:
    """Store a text, reply or file message; a reply is kept as a text that quotes, and a
    message sent under a timer gets the moment it disappears."""
    if payload["t"] == content.REPLY:
        try:
            payload = {**content.check(payload), "t": content.TEXT}
        except content.BadContent:  # an unreadable quote: still a text
            payload = {"t": content.TEXT, "text": str(payload.get("text", ""))}
    text = str(payload.get("text", payload.get("name", "")))
    extra = {k: v for k, v in payload.items() if k not in ("t", "text", "ttl")}
    due = content.expires_at(ts_ms, content.ttl_of(payload))
    if due is not None:
        extra["expires_at"] = due
        upcoming = store.get_json(NEXT_EXPIRY)
        if upcoming is None or due < upcoming:
            store.put_json(NEXT_EXPIRY, due)
    message = StoredMessage(
        server_id, conversation, sender[0], sender[1], ts_ms, payload["t"], text, extra, status
    )
    store.add_message(message)
    return message


def sweep(store: LocalStore, now_ms: int) -> list[str]:
    """Remove the disappearing messages due by ``now_ms`` from the history and the search
    index; returns their server ids."""
    upcoming = store.get_json(NEXT_EXPIRY)
    if upcoming is None or upcoming > now_ms:
        return []
    gone = store.expired(now_ms)
    store.remove_messages(gone)
    following = store.next_expiry()
    if following is None:
        store.delete(NEXT_EXPIRY)
    else:
        store.put_json(NEXT_EXPIRY, following)
    return gone


def apply_control(
    store: LocalStore,
    server_id: str,
    conversation: str,
    sender: tuple[str, int],
    ts_ms: int,
    payload: dict[str, Any],
    me: str,
) -> Event | None:
    """Apply a reaction, edit, delete or timer from ``sender`` (``ts_ms``: the server's
    timestamp of the change). One that breaks the rules is ignored (None)."""
    try:
        payload = content.check(payload)
    except content.BadContent as exc:
        log.warning("ignoring %s: %s", server_id, exc)
        return None
    kind, user = payload["t"], sender[0]
    if kind == content.TIMER:
        _set_timer(store, conversation, payload["seconds"])
        who = "you" if user == me else names.person(store, user)
        text = content.describe_timer(payload["seconds"], who)
        extra = {"seconds": payload["seconds"]}
        store.add_message(
            StoredMessage(
                server_id, conversation, user, sender[1], ts_ms, kind, text, extra, "notice"
            )
        )
        return Event(kind, conversation, user, sender[1], server_id, text, extra)
    target = store.message(payload["target"])
    if target is None or target.conversation != conversation or target.extra.get("deleted"):
        log.warning("ignoring %s %s: no such message here", kind, server_id)
        return None
    extra = dict(target.extra)
    new_text = target.text
    if kind == content.REACTION:
        if target.kind not in CHANGEABLE[content.DELETE]:
            return None
        extra["reactions"] = content.react(extra.get("reactions", {}), user, payload["emoji"])
    else:
        why = content.change_refusal(kind, target.sender_user, target.timestamp, user, ts_ms)
        if why is None and target.kind not in CHANGEABLE[kind]:
            why = f"a {target.kind} cannot be {kind}ed"
        if why is not None:
            log.warning("ignoring %s %s: %s", kind, server_id, why)
            return None
        if kind == content.EDIT:
            new_text, extra["edited"] = payload["text"], True
        else:  # delete: nothing of it is kept, only that it was there
            new_text = ""
            extra = {"deleted": True, **{k: v for k, v in extra.items() if k == "expires_at"}}
    store.update_message(target.server_id, new_text, extra)
    if kind == content.DELETE:  # the quotes of it go too: deleted means unreadable
        for quoting in store.replies_to(target.server_id):
            store.update_message(quoting.server_id, quoting.text, {**quoting.extra, "excerpt": ""})
    shown = payload.get("emoji", payload.get("text", ""))
    return Event(
        kind, conversation, user, sender[1], server_id, shown, {"target": target.server_id}
    )
