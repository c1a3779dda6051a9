"""The outbox: texts typed while the server cannot be reached wait in the local store
and go out, in order, once it can.

Each queued text keeps the client id it was given when typed; every attempt sends it
under that id and the server dedupes by it, so a retry of a send whose answer was lost
(it arrived, the reply did not) is never a second message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tidings.client.http import ApiError
from tidings.client.sdk import Client, UntrustedIdentity

UNREACHABLE = 0
"""The ``ApiError`` status of a request that never got an answer (no connection)."""


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the server could not be reached (worth queueing), not that
    it refused (a refusal would be refused again: it is reported instead)."""
    return isinstance(exc, ApiError) and exc.status == UNREACHABLE


@dataclass(frozen=True)
class Refused:
    """A queued text the server refused (it would refuse it again): not sent, dropped
    from the outbox, and reported."""

    client_id: str
    conversation: str
    text: str
    error: Exception


@dataclass(frozen=True)
class Sent:
    """A text that left (its server id), or was queued (``queued``: how many wait);
    ``refused``: earlier queued texts that could not go."""

    server_id: str
    queued: int = 0
    refused: tuple[Refused, ...] = ()


@dataclass(frozen=True)
class Flushed:
    sent: list[tuple[str, str]]
    """(client id, server id) of each text sent, in order."""
    refused: list[Refused]


async def _send(client: Client, conversation: str, text: str, client_id: str) -> str:
    if conversation.startswith("group:"):
        group_id = conversation.removeprefix("group:")
        return await client.send_group_text(group_id, text, client_id=client_id)
    return await client.send_text(conversation, text, client_id=client_id)


async def send_or_queue(client: Client, conversation: str, text: str) -> Sent:
    """Send ``text`` after whatever waits in the outbox (so order holds); queue it when
    the server cannot be reached. A refusal of ``text`` itself is raised, as a plain
    send's would be."""
    client_id = str(uuid.uuid4())
    client.store.queue_outgoing(client_id, conversation, text)
    try:
        flushed = await flush(client)
    except ApiError as exc:
        if not unreachable(exc):
            raise
        return Sent("", len(client.store.outgoing()))
    earlier = tuple(r for r in flushed.refused if r.client_id != client_id)
    for refused in flushed.refused:
        if refused.client_id == client_id:
            raise refused.error
    return Sent(dict(flushed.sent)[client_id], refused=earlier)


async def flush(client: Client) -> Flushed:
    """Send the queued texts oldest first, each under its own client id. An unreachable
    server stops it (raising ``ApiError`` of status 0) with the rest still queued, to be
    tried again later; a text the server refuses (or a verified contact whose key
    changed) is dropped from the outbox and returned in ``refused``, for the caller to
    report, so one bad text does not hold the others back."""
    out = Flushed([], [])
    for client_id, conversation, text in client.store.outgoing():
        try:
            server_id = await _send(client, conversation, text, client_id)
        except ApiError as exc:
            if unreachable(exc):
                raise
            out.refused.append(Refused(client_id, conversation, text, exc))
        except UntrustedIdentity as exc:
            out.refused.append(Refused(client_id, conversation, text, exc))
        else:
            out.sent.append((client_id, server_id))
        client.store.drop_outgoing(client_id)
    return out
