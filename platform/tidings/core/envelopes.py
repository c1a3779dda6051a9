"""Envelopes: what travels from router to inbox to socket.

The body is opaque ciphertext (base64). The server reads only routing fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from tidings.core import jsoncodec


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
    trace: str | None = None
    """W3C ``traceparent`` of the hop that produced this copy, on sampled messages only
    (``tidings.tracing``): routing metadata beside the ciphertext, never inside it, and
    never shown to the recipient. Absent from the encoded form when None."""

    def for_device(self, user_id: str, device_id: int) -> Envelope:
        return replace(self, recipient_user=user_id, recipient_device=device_id)

    def encode(self, epoch: int | None = None) -> bytes:
        """The bus and inbox form (JSON), optionally stamped with another ``epoch``.

        Written out field by field: this runs for every copy of every message, and
        ``dataclasses.asdict`` (a deep copy) cost more than the JSON itself."""
        data = {
            "server_id": self.server_id,
            "kind": self.kind.value,
            "timestamp": self.timestamp,
            "sender_user": self.sender_user,
            "sender_device": self.sender_device,
            "recipient_user": self.recipient_user,
            "recipient_device": self.recipient_device,
            "client_id": self.client_id,
            "group_id": self.group_id,
            "body": self.body,
            "receipt_kind": None if self.receipt_kind is None else self.receipt_kind.value,
            "message_ids": list(self.message_ids),
            "typing": self.typing,
            "ephemeral": self.ephemeral,
            "epoch": self.epoch if epoch is None else epoch,
        }
        if self.trace is not None:
            data["trace"] = self.trace
        return jsoncodec.dumps(data)

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        data: dict[str, Any] = jsoncodec.loads(raw)
        receipt_kind = data.get("receipt_kind")
        return cls(
            server_id=data["server_id"],
            kind=EnvelopeKind(data["kind"]),
            timestamp=data["timestamp"],
            sender_user=data["sender_user"],
            sender_device=data["sender_device"],
            recipient_user=data["recipient_user"],
            recipient_device=data["recipient_device"],
            client_id=data.get("client_id"),
            group_id=data.get("group_id"),
            body=data.get("body"),
            receipt_kind=None if receipt_kind is None else ReceiptKind(receipt_kind),
            message_ids=tuple(data.get("message_ids", ())),
            typing=data.get("typing"),
            ephemeral=data.get("ephemeral", False),
            epoch=data.get("epoch", 0),
            trace=data.get("trace"),
        )

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
