"""Group sender keys: one signed ciphertext per group message, per-sender receive state.

Each device keeps, per group, an :class:`OwnSenderKey`: a random 31-bit ``key_id``, a
32-byte chain key with an iteration counter, and an Ed25519 signing key. Per message::

    seed_i        = HMAC-SHA256(chain_key_i, 0x01)
    chain_key_i+1 = HMAC-SHA256(chain_key_i, 0x02)
    key || nonce  = HKDF-SHA256(seed_i, salt=32 zero bytes, info="Tidings sender key v1", 44)

and the plaintext is sealed with AES-256-GCM (32-byte key, 12-byte nonce; associated
data = the message prefix from :mod:`~tidings.client.crypto.sender_key_wire`), then the
whole message is signed. A :class:`SenderKeyDistribution` (chain key at the current
iteration + signing public key) is sent pairwise over 1:1 sessions. Rekeying is
creating a fresh :class:`OwnSenderKey`. See ``docs/sender-keys.md``.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace
from hashlib import sha256
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.client.crypto import _codec as c
from tidings.client.crypto.errors import (
    BadSignature,
    DecryptionFailed,
    DuplicateMessage,
    MalformedMessage,
    TooManySkipped,
    UnknownSenderKey,
)
from tidings.client.crypto.sender_key_wire import (
    KEY_ID_MAX,
    VERSION,
    SenderKeyDistribution,
    SenderKeyMessage,
)

__all__ = [
    "GroupReceiver",
    "OwnSenderKey",
    "SenderKeyDistribution",
    "SenderKeyMessage",
    "SenderKeyReceiver",
]

MESSAGE_INFO = b"Tidings sender key v1"
MAX_SKIP = 1000
"""Furthest a message may be ahead of the receiver's chain (bounded skip)."""
MAX_STORED_KEYS = 1000
"""Skipped message keys kept per sender key for late, out-of-order messages."""
KEYS_PER_SENDER = 2
"""Sender keys kept per sender, so messages sent just before a rekey still decrypt."""


def _advance(chain_key: bytes) -> tuple[bytes, bytes]:
    """(message seed, next chain key)."""
    seed = hmac.new(chain_key, b"\x01", sha256).digest()
    return seed, hmac.new(chain_key, b"\x02", sha256).digest()


def _seal_key(seed: bytes) -> tuple[AESGCM, bytes]:
    out = HKDF(hashes.SHA256(), 44, b"\x00" * 32, MESSAGE_INFO).derive(seed)
    return AESGCM(out[:32]), out[32:]


@dataclass(frozen=True)
class OwnSenderKey:
    """This device's sending state for one group; :meth:`encrypt` returns the next state."""

    group_id: str
    key_id: int
    iteration: int
    chain_key: bytes
    signing_seed: bytes

    @classmethod
    def create(cls, group_id: str) -> OwnSenderKey:
        """A fresh sender key: call again on every membership change (rekey)."""
        signing = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(group_id, secrets.randbelow(KEY_ID_MAX), 0, secrets.token_bytes(32), signing)

    def distribution(self) -> SenderKeyDistribution:
        public = Ed25519PrivateKey.from_private_bytes(self.signing_seed).public_key()
        return SenderKeyDistribution(
            self.group_id, self.key_id, self.iteration, self.chain_key, public.public_bytes_raw()
        )

    def encrypt(self, plaintext: bytes) -> tuple[OwnSenderKey, bytes]:
        """(advanced state to store, message bytes for ``group_body``)."""
        seed, next_chain = _advance(self.chain_key)
        aead, nonce = _seal_key(seed)
        msg = SenderKeyMessage(self.group_id, self.key_id, self.iteration, b"")
        msg = replace(msg, ciphertext=aead.encrypt(nonce, plaintext, msg.prefix()))
        signature = Ed25519PrivateKey.from_private_bytes(self.signing_seed).sign(msg.signed_bytes())
        state = replace(self, iteration=self.iteration + 1, chain_key=next_chain)
        return state, replace(msg, signature=signature).to_bytes()

    def to_bytes(self) -> bytes:
        return c.dumps(
            {
                "v": VERSION,
                "group": self.group_id,
                "key_id": self.key_id,
                "n": self.iteration,
                "chain_key": c.b64(self.chain_key),
                "signing_seed": c.b64(self.signing_seed),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> OwnSenderKey:
        obj = c.loads(data, what="sender key state")
        c.check_version(obj, VERSION, what="sender key state")
        return cls(
            c.get_str(obj, "group"),
            c.get_int(obj, "key_id", hi=KEY_ID_MAX),
            c.get_int(obj, "n"),
            c.unb64(obj.get("chain_key"), what="chain_key", size=32),
            c.unb64(obj.get("signing_seed"), what="signing_seed", size=32),
        )


class SenderKeyReceiver:
    """What one member knows about one sender key: chain position and skipped keys."""

    def __init__(
        self, dist: SenderKeyDistribution, skipped: dict[int, bytes] | None = None
    ) -> None:
        self.dist = dist  # iteration/chain_key advance as messages are read
        self.skipped: dict[int, bytes] = dict(skipped or {})

    def decrypt(self, msg: SenderKeyMessage) -> bytes:
        try:
            Ed25519PublicKey.from_public_bytes(self.dist.signing_key).verify(
                msg.signature, msg.signed_bytes()
            )
        except InvalidSignature as exc:
            raise BadSignature("sender key message signature does not verify") from exc
        n, start = msg.iteration, self.dist.iteration
        new_skipped: dict[int, bytes] = {}
        chain = self.dist.chain_key
        if n < start:
            if n not in self.skipped:
                raise DuplicateMessage(f"group message {n} was already read (or is too old)")
            seed = self.skipped[n]
        elif n - start > MAX_SKIP:
            raise TooManySkipped(f"group message {n} is more than {MAX_SKIP} ahead of {start}")
        else:
            for i in range(start, n):
                new_skipped[i], chain = _advance(chain)
            seed, chain = _advance(chain)
        aead, nonce = _seal_key(seed)
        try:
            plaintext = aead.decrypt(nonce, msg.ciphertext, msg.prefix())
        except InvalidTag as exc:
            raise DecryptionFailed("group ciphertext failed authentication") from exc
        if n < start:
            del self.skipped[n]
        else:
            self.skipped.update(new_skipped)
            for old in sorted(self.skipped)[: max(0, len(self.skipped) - MAX_STORED_KEYS)]:
                del self.skipped[old]
            self.dist = replace(self.dist, iteration=n + 1, chain_key=chain)
        return plaintext


class GroupReceiver:
    """All sender keys this device holds for one group, per sender (e.g. ``user:device``)."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self._senders: dict[str, list[SenderKeyReceiver]] = {}

    def process_distribution(self, sender: str, dist: SenderKeyDistribution) -> None:
        """Install a sender's key; a key id already held is kept (no rewind, no replays)."""
        if dist.group_id != self.group_id:
            raise MalformedMessage("sender key distribution is for another group")
        keys = self._senders.setdefault(sender, [])
        if any(r.dist.key_id == dist.key_id for r in keys):
            return
        keys.append(SenderKeyReceiver(dist))
        del keys[:-KEYS_PER_SENDER]

    def forget(self, sender: str) -> None:
        """Drop a removed member's keys: their later messages are refused."""
        self._senders.pop(sender, None)

    def decrypt(self, sender: str, data: bytes) -> bytes:
        msg = SenderKeyMessage.from_bytes(data)
        if msg.group_id != self.group_id:
            raise MalformedMessage("group message is for another group")
        for receiver in self._senders.get(sender, []):
            if receiver.dist.key_id == msg.key_id:
                return receiver.decrypt(msg)
        raise UnknownSenderKey(f"no sender key {msg.key_id} from {sender!r} in this group")

    def to_bytes(self) -> bytes:
        def one(r: SenderKeyReceiver) -> dict[str, Any]:
            return {
                "dist": r.dist.to_bytes().decode("utf-8"),
                "skipped": [[i, c.b64(s)] for i, s in sorted(r.skipped.items())],
            }

        senders = {s: [one(r) for r in rs] for s, rs in self._senders.items()}
        return c.dumps({"v": VERSION, "group": self.group_id, "senders": senders})

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupReceiver:
        obj = c.loads(data, what="group receiver state")
        c.check_version(obj, VERSION, what="group receiver state")
        group = cls(c.get_str(obj, "group"))
        try:
            for sender, receivers in obj["senders"].items():
                group._senders[sender] = [
                    SenderKeyReceiver(
                        SenderKeyDistribution.from_bytes(r["dist"].encode("utf-8")),
                        {int(i): c.unb64(s, what="skipped", size=32) for i, s in r["skipped"]},
                    )
                    for r in receivers
                ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedMessage(f"group receiver state is invalid: {exc}") from exc
        return group
