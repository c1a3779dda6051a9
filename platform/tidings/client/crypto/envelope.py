"""Wire format of 1:1 envelopes (UTF-8 JSON; the SDK base64s it into ``ciphertexts``)::

    {"v": 1, "dh": b64(32), "pn": int, "n": int, "ct": b64,
     "x3dh": {"ik": b64(32), "ek": b64(32), "spk": int, "opk": int | null}}

``dh``/``pn``/``n`` are the Double Ratchet header (sender ratchet key, previous and
current sending chain length); ``ct`` is the AES-256-CBC + HMAC-SHA256 output. ``x3dh``
(initiator identity key, ephemeral key, signed and one-time prekey ids) rides on every
message the initiator sends until it has decrypted a reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import doubleratchet

from tidings.client.crypto import _codec as c
from tidings.client.crypto.identity import KEY_ID_MAX

VERSION = 1


@dataclass(frozen=True)
class Initiation:
    """What the responder needs to run its half of X3DH."""

    identity_key: bytes
    ephemeral_key: bytes
    signed_prekey_id: int
    one_time_prekey_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ik": c.b64(self.identity_key),
            "ek": c.b64(self.ephemeral_key),
            "spk": self.signed_prekey_id,
            "opk": self.one_time_prekey_id,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Initiation:
        opk = obj.get("opk")
        return cls(
            c.unb64(obj.get("ik"), what="x3dh.ik", size=32),
            c.unb64(obj.get("ek"), what="x3dh.ek", size=32),
            c.get_int(obj, "spk", hi=KEY_ID_MAX),
            None if opk is None else c.get_int(obj, "opk", hi=KEY_ID_MAX),
        )


@dataclass(frozen=True)
class Envelope:
    """A parsed 1:1 envelope."""

    message: doubleratchet.EncryptedMessage
    initiation: Initiation | None

    @classmethod
    def parse(cls, data: bytes) -> Envelope:
        obj = c.loads(data, what="envelope")
        c.check_version(obj, VERSION, what="envelope")
        header = doubleratchet.Header(
            c.unb64(obj.get("dh"), what="dh", size=32), c.get_int(obj, "pn"), c.get_int(obj, "n")
        )
        ct = c.unb64(obj.get("ct"), what="ct")
        init = None if obj.get("x3dh") is None else Initiation.from_json(c.get_obj(obj, "x3dh"))
        return cls(doubleratchet.EncryptedMessage(header, ct), init)

    def to_bytes(self) -> bytes:
        h = self.message.header
        obj: dict[str, Any] = {
            "v": VERSION,
            "dh": c.b64(h.ratchet_pub),
            "pn": h.previous_sending_chain_length,
            "n": h.sending_chain_length,
            "ct": c.b64(self.message.ciphertext),
        }
        if self.initiation is not None:
            obj["x3dh"] = self.initiation.to_json()
        return c.dumps(obj)
