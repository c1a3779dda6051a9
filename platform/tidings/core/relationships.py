"""What a stranger may not do, as pure decisions over small records.

Signal-Server and WhatsApp bound what an account can push at someone it never talked to;
Tidings keeps two records in the ``KeyValues`` port, each one short key with a TTL:

- *received*: (reader, original sender, server id) for every message a device of the
  reader acked. A ``read`` receipt names only such messages, and goes to their sender:
  ids the reader was never sent by the receipt's addressee are left out, so nobody can
  put a receipt in the queue of someone who never wrote to them.
- *conversation*: an unordered pair of accounts, refreshed by every direct message
  between them. Typing goes only to a user of such a pair (or one who has the typist in
  their contacts) and to groups the typist is a member of.

Keys are hashed: a record costs tens of bytes whatever the ids, and the key alone says
nothing about who talks to whom.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tidings.core.envelopes import Envelope, EnvelopeKind

RECEIVED_TTL_S = 7 * 24 * 3600
"""How long after its delivery a message can be receipted ``read`` (as the send dedupe
window): a receipt for an older message is left out."""

CONVERSATION_TTL_S = 30 * 24 * 3600
"""How long after the last direct message between two accounts either may send the
other typing signals (as long as the inbox keeps messages)."""

PRESENT = b"1"


def _digest(text: str) -> str:
    raw = hashlib.blake2b(text.encode(), digest_size=15).digest()
    return base64.urlsafe_b64encode(raw).decode()


def received_key(reader: str, sender: str, server_id: str) -> str:
    """The record that ``sender`` sent ``reader`` the message ``server_id``."""
    return "rcv:" + _digest(f"{reader}/{sender}/{server_id}")


def conversation_key(one: str, other: str) -> str:
    """The record that two accounts exchanged a direct message; the same either way."""
    first, second = sorted((one, other))
    return "conv:" + _digest(f"{first}/{second}")


def received_records(stored: Iterable[Envelope]) -> list[tuple[str, bytes, float]]:
    """KeyValues items for the messages from others among ``stored`` (envelopes put in
    their recipients' inboxes): what a later ``read`` receipt by a recipient may name.
    One per recipient user and message, however many of its devices got a copy."""
    records = {
        received_key(e.recipient_user, e.sender_user, e.server_id): None
        for e in stored
        if e.kind is EnvelopeKind.MESSAGE and e.sender_user != e.recipient_user
    }
    return [(key, PRESENT, RECEIVED_TTL_S) for key in records]


def conversation_records(sender: str, to_users: Iterable[str]) -> list[tuple[str, bytes, float]]:
    """KeyValues items for direct messages from ``sender`` to each of ``to_users``."""
    return [
        (conversation_key(sender, to), PRESENT, CONVERSATION_TTL_S)
        for to in sorted(set(to_users))
        if to != sender
    ]


@dataclass(frozen=True)
class ReceiptCheck:
    """Which ids of a ``read`` receipt were sent to its reader by its addressee."""

    known: tuple[str, ...]
    dropped: tuple[str, ...]


def check_receipt(message_ids: Sequence[str], found: Sequence[bytes | None]) -> ReceiptCheck:
    """Split ``message_ids`` by their received records (``found``, in the same order);
    an id named twice counts once."""
    known: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for message_id, record in zip(message_ids, found, strict=True):
        if message_id in seen:
            continue
        seen.add(message_id)
        (known if record is not None else dropped).append(message_id)
    return ReceiptCheck(tuple(known), tuple(dropped))
