"""The outbox: messages sent while the server cannot be reached wait in the local store
and go out, in order, once it can.

Texts, replies, reactions, edits, deletes and files all wait in the same queue, so they
leave in the order they were sent. Each keeps the client id it was given when sent;
every attempt sends it under that id and the server dedupes by it, so a retry of a send
whose answer was lost (it arrived, the reply did not) is never a second message. A
file is encrypted when queued and uploaded once: its media id is kept with it, so a
retry after a lost answer sends the same upload again instead of a second one.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidings.client import content, effects
from tidings.client.http import ApiError
from tidings.client.outbox_store import Queued
from tidings.client.sdk import Client, UntrustedIdentity
from tidings.client.sending import seal_file

UNREACHABLE = 0
"""The ``ApiError`` status of a request that never got an answer (no connection)."""


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the server could not be reached (worth queueing), not that
    it refused (a refusal would be refused again: it is reported instead)."""
    return isinstance(exc, ApiError) and exc.status == UNREACHABLE


@dataclass(frozen=True)
class Refused:
    """A queued message the server refused (it would refuse it again): not sent,
    dropped from the outbox, and reported."""

    client_id: str
    conversation: str
    text: str
    error: Exception


@dataclass(frozen=True)
class Sent:
    """A message that left (its server id), or was queued (``queued``: how many wait);
    ``refused``: earlier queued messages that could not go."""

    server_id: str
    queued: int = 0
    refused: tuple[Refused, ...] = ()


@dataclass(frozen=True)
class Flushed:
    sent: list[tuple[str, str]]
    """(client id, server id) of each message sent, in order."""
    refused: list[Refused]


def summary(payload: dict[str, Any]) -> str:
    """What a queued content says, for ``tidings outbox`` and refusals: a reply's or
    edit's text, a reaction's emoji, a file's name, a timer's length."""
    kind = payload.get("t")
    if kind == "file":
        return str(payload.get("name", ""))
    if kind == content.REACTION:
        return str(payload.get("emoji", ""))
    if kind == content.TIMER:
        return content.duration(int(payload.get("seconds", 0)))
    return str(payload.get("text", ""))


def listed(entry: Queued) -> str:
    """One queued message as ``tidings outbox`` shows it: a text as it is, anything
    else with what it is (and the message it is about)."""
    if entry.payload is None:
        return entry.text
    p = entry.payload
    what = {
        content.REPLY: f"reply to {p.get('reply_to')}",
        content.REACTION: f"reaction to {p.get('target')}",
        content.EDIT: f"edit of {p.get('target')}",
        content.DELETE: f"delete of {p.get('target')}",
        content.TIMER: "disappearing messages",
        "file": f"file, {p.get('size', 0)} bytes",
    }.get(entry.kind, entry.kind)
    return f"[{what}] {entry.text}".rstrip()


async def send_or_queue(client: Client, conversation: str, text: str) -> Sent:
    """Send ``text`` after whatever waits in the outbox (so order holds); queue it when
    the server cannot be reached. A refusal of ``text`` itself is raised, as a plain
    send's would be."""
    return await _queue_and_flush(client, Queued(str(uuid.uuid4()), conversation, text))


async def send_content_or_queue(client: Client, conversation: str, payload: dict[str, Any]) -> Sent:
    """A reply, reaction, edit, delete or timer (its payload, checked by the SDK's
    ``*_content`` or ``content.timer``), like :func:`send_or_queue`."""
    entry = Queued(str(uuid.uuid4()), conversation, summary(payload), payload)
    return await _queue_and_flush(client, entry)


async def send_file_or_queue(client: Client, conversation: str, path: Path) -> Sent:
    """A file, like :func:`send_or_queue`: read and encrypted now (over the size limit:
    :class:`~tidings.client.sending.FileTooLarge`, nothing queued)."""
    payload, blob = await seal_file(path)
    ttl = effects.timer(client.store, conversation)
    payload = {**payload, "ttl": ttl} if ttl else payload
    entry = Queued(str(uuid.uuid4()), conversation, summary(payload), payload, blob)
    return await _queue_and_flush(client, entry)


async def _queue_and_flush(client: Client, entry: Queued) -> Sent:
    # Queued first, even online: it then goes after what waits, and a crash mid-send
    # leaves it to be retried under the same client id rather than lost.
    try:
        async with _lock(client):  # queued and flushed by this flush, not another's
            client.store.outbox.queue(entry)
            flushed = await _flush(client)
    except ApiError as exc:
        if not unreachable(exc):
            raise
        return Sent("", client.store.outbox.count())
    earlier = tuple(r for r in flushed.refused if r.client_id != entry.client_id)
    for refused in flushed.refused:
        if refused.client_id == entry.client_id:
            raise refused.error
    return Sent(dict(flushed.sent)[entry.client_id], refused=earlier)


_flushing: weakref.WeakKeyDictionary[Client, asyncio.Lock] = weakref.WeakKeyDictionary()
"""One flush at a time per client: the chat flushes on reconnect while a typed message
flushes too, and two flushes at once would upload the same queued file twice."""


async def flush(client: Client) -> Flushed:
    """Send the queued messages oldest first, each under its own client id. An
    unreachable server stops it (raising ``ApiError`` of status 0) with the rest still
    queued, to be tried again later; a message the server refuses (or a verified
    contact whose key changed) is dropped from the outbox and returned in ``refused``,
    for the caller to report, so one bad message does not hold the others back."""
    async with _lock(client):
        return await _flush(client)


def _lock(client: Client) -> asyncio.Lock:
    return _flushing.setdefault(client, asyncio.Lock())


async def _flush(client: Client) -> Flushed:
    out = Flushed([], [])
    for entry in client.store.outbox.entries():
        try:
            server_id = await _send(client, entry)
        except ApiError as exc:
            if unreachable(exc):
                raise
            out.refused.append(Refused(entry.client_id, entry.conversation, entry.text, exc))
        except UntrustedIdentity as exc:
            out.refused.append(Refused(entry.client_id, entry.conversation, entry.text, exc))
        else:
            out.sent.append((entry.client_id, server_id))
        client.store.outbox.drop(entry.client_id)
    return out


async def _send(client: Client, entry: Queued) -> str:
    conversation, client_id = entry.conversation, entry.client_id
    if entry.payload is None:  # a text: the conversation's timer when it goes
        if conversation.startswith("group:"):
            group_id = conversation.removeprefix("group:")
            return await client.send_group_text(group_id, entry.text, client_id=client_id)
        return await client.send_text(conversation, entry.text, client_id=client_id)
    payload = entry.payload
    if entry.kind == "file":
        media_id = entry.media_id
        if media_id is None:
            assert entry.blob is not None
            media_id = await client.upload_sealed(entry.blob)
            # Kept before sending: if the send's answer is lost, the retry sends this
            # upload under the same client id (deduped), and never uploads again.
            client.store.outbox.uploaded(client_id, media_id)
        payload = {**payload, "media_id": media_id}
    return await client.send_to(conversation, payload, client_id=client_id)
