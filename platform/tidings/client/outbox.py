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
from tidings.client.sdk import Client

UNREACHABLE = 0
"""The ``ApiError`` status of a request that never got an answer (no connection)."""


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the server could not be reached (worth queueing), not that
    it refused (a refusal would be refused again: it is reported instead)."""
    return isinstance(exc, ApiError) and exc.status == UNREACHABLE


@dataclass(frozen=True)
class Sent:
    """A text that left: its server id, or it was queued (``queued`` then waiting)."""

    server_id: str
    queued: int = 0


async def _send(client: Client, conversation: str, text: str, client_id: str) -> str:
    if conversation.startswith("group:"):
        group_id = conversation.removeprefix("group:")
        return await client.send_group_text(group_id, text, client_id=client_id)
    return await client.send_text(conversation, text, client_id=client_id)


async def send_or_queue(client: Client, conversation: str, text: str) -> Sent:
    """Send ``text`` after whatever waits in the outbox (so order holds); queue it when
    the server cannot be reached."""
    client_id = str(uuid.uuid4())
    client.store.queue_outgoing(client_id, conversation, text)
    try:
        sent = dict(await flush(client))
    except ApiError as exc:
        if not unreachable(exc):
            raise
        return Sent("", len(client.store.outgoing()))
    return Sent(sent[client_id])


async def flush(client: Client) -> list[tuple[str, str]]:
    """Send the queued texts oldest first, each under its own client id; returns
    (client id, server id) of each sent. Stops (raising) at the first failure, leaving it
    and the rest queued: an unreachable server is tried again later; a refusal is for
    the caller to report (the text waits until it can go, e.g. after ``/verify accept``,
    or is dropped with ``tidings outbox drop``)."""
    sent = []
    for client_id, conversation, text in client.store.outgoing():
        server_id = await _send(client, conversation, text, client_id)
        client.store.drop_outgoing(client_id)
        sent.append((client_id, server_id))
    return sent
