"""Wire format of group messages and sender key distributions (UTF-8 JSON).

A group message signs ``"TidingsSK1" || u16 len(group) || group || u32 key_id ||
u32 iteration || ciphertext`` with the sender key's Ed25519 key; the same prefix (without
the ciphertext) is the AES-GCM associated data. See ``docs/sender-keys.md``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tidings.client.crypto import _codec as c
from tidings.client.crypto.errors import MalformedMessage

VERSION = 1
SIGNED_PREFIX = b"TidingsSK1"
KEY_ID_MAX = 2**31 - 1


@dataclass(frozen=True)
class SenderKeyDistribution:
    """Everything a member needs to read one sender's messages from ``iteration`` on."""

    group_id: str
    key_id: int
    iteration: int
    chain_key: bytes
    signing_key: bytes

    def to_bytes(self) -> bytes:
        return c.dumps(
            {
                "v": VERSION,
                "type": "sender_key_distribution",
                "group": self.group_id,
                "key_id": self.key_id,
                "n": self.iteration,
                "chain_key": c.b64(self.chain_key),
                "signing_key": c.b64(self.signing_key),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyDistribution:
        obj = c.loads(data, what="sender key distribution")
        c.check_version(obj, VERSION, what="sender key distribution")
        if obj.get("type") != "sender_key_distribution":
            raise MalformedMessage("not a sender key distribution message")
        return cls(
            c.get_str(obj, "group"),
            c.get_int(obj, "key_id", hi=KEY_ID_MAX),
            c.get_int(obj, "n"),
            c.unb64(obj.get("chain_key"), what="chain_key", size=32),
            c.unb64(obj.get("signing_key"), what="signing_key", size=32),
        )


@dataclass(frozen=True)
class SenderKeyMessage:
    """One group message: the same bytes go to every member device."""

    group_id: str
    key_id: int
    iteration: int
    ciphertext: bytes
    signature: bytes = b""

    def prefix(self) -> bytes:
        group = self.group_id.encode("utf-8")
        return (
            SIGNED_PREFIX
            + struct.pack(">H", len(group))
            + group
            + struct.pack(">II", self.key_id, self.iteration)
        )

    def signed_bytes(self) -> bytes:
        return self.prefix() + self.ciphertext

    def to_bytes(self) -> bytes:
        return c.dumps(
            {
                "v": VERSION,
                "type": "sender_key_message",
                "group": self.group_id,
                "key_id": self.key_id,
                "n": self.iteration,
                "ct": c.b64(self.ciphertext),
                "sig": c.b64(self.signature),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyMessage:
        obj = c.loads(data, what="sender key message")
        c.check_version(obj, VERSION, what="sender key message")
        if obj.get("type") != "sender_key_message":
            raise MalformedMessage("not a sender key message")
        return cls(
            c.get_str(obj, "group"),
            c.get_int(obj, "key_id", hi=KEY_ID_MAX),
            c.get_int(obj, "n"),
            c.unb64(obj.get("ct"), what="ct"),
            c.unb64(obj.get("sig"), what="sig", size=64),
        )
