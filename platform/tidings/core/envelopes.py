"""Envelopes: what travels from router to inbox to socket.

The body is opaque ciphertext (base64). The server reads only routing fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any


class EnvelopeKind(StrEnum):
    MESSAGE = "message"
    RECEIPT = "receipt"
    TYPING = "typing"


class ReceiptKind(StrEnum):
    DELIVERED = "delivered"
    READ = "read"


@dataclass(frozen=True)
class Envelope:
    """One copy of a message (or receipt, or typing signal) for one recipient device."""

    server_id: str
    kind: EnvelopeKind
    timestamp: int
    """Milliseconds since the epoch, fixed when the send was first accepted."""
    sender_user: str
    sender_device: int
    recipient_user: str
    recipient_device: int
    client_id: str | None = None
    group_id: str | None = None
    body: str | None = None
    receipt_kind: ReceiptKind | None = None
    message_ids: tuple[str, ...] = field(default_factory=tuple)
    typing: str | None = None
    ephemeral: bool = False
    """Ephemeral envelopes (typing) go to online devices only and are never stored."""
    epoch: int = 0
    """Fencing epoch of the recipient's shard when the router produced this."""

    def for_device(self, user_id: str, device_id: int) -> Envelope:
        return replace(self, recipient_user=user_id, recipient_device=device_id)

    def encode(self) -> bytes:
        data = asdict(self)
        data["message_ids"] = list(self.message_ids)
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        data: dict[str, Any] = json.loads(raw)
        data["kind"] = EnvelopeKind(data["kind"])
        if data.get("receipt_kind") is not None:
            data["receipt_kind"] = ReceiptKind(data["receipt_kind"])
        data["message_ids"] = tuple(data.get("message_ids", ()))
        return cls(**data)

    def to_client(self) -> dict[str, Any]:
        """The envelope as the recipient device sees it in a ``deliver`` frame."""
        out: dict[str, Any] = {
            "server_id": self.server_id,
            "type": self.kind.value,
            "timestamp": self.timestamp,
            "from": {"user": self.sender_user, "device": self.sender_device},
        }
        if self.client_id is not None:
            out["client_id"] = self.client_id
        if self.group_id is not None:
            out["group"] = self.group_id
        if self.body is not None:
            out["body"] = self.body
        if self.kind is EnvelopeKind.RECEIPT and self.receipt_kind is not None:
            out["receipt"] = {
                "kind": self.receipt_kind.value,
                "message_ids": list(self.message_ids),
            }
        if self.typing is not None:
            out["typing"] = self.typing
        return out
