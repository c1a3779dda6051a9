"""Deterministic identifiers.

A retried send carries the same client id, so it must map to the same server id;
uuid5 over (sender, device, client id) gives that without any lookup.
"""

from __future__ import annotations

import uuid

_SEND_NAMESPACE = uuid.UUID("6f3c1c52-5b1e-4d8e-9a57-0d6b3c9b7a11")
_RECEIPT_NAMESPACE = uuid.UUID("0b8e2f44-7d2a-4c1f-8e63-5f9a1d2c3b4e")


def server_id(sender_user: str, sender_device: int, client_id: str) -> str:
    """The server id of a send: equal for equal (sender, device, client id)."""
    return str(uuid.uuid5(_SEND_NAMESPACE, f"{sender_user}/{sender_device}/{client_id}"))


def receipt_id(kind: str, reader_user: str, reader_device: int, message_server_id: str) -> str:
    """The server id of a receipt, so an ack retried twice sends one receipt."""
    name = f"{kind}/{reader_user}/{reader_device}/{message_server_id}"
    return str(uuid.uuid5(_RECEIPT_NAMESPACE, name))
