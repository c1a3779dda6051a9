"""State shared by every part of the client: store, API, keys, and key upkeep."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings.client.crypto.identity import DeviceKeys
from tidings.client.http import Api, ApiError, Tokens
from tidings.client.live import LiveSocket
from tidings.client.locks import RatchetLock
from tidings.client.store import LocalStore, StoredMessage

log = logging.getLogger("tidings.client")

PREKEY_BATCH = 100
PREKEY_LOW_WATER = 20
PREKEY_CHECK_EVERY = 10
"""After the first one-time prekey used on a connection, re-check the count every N uses."""
SIGNED_PREKEY_MAX_AGE_S = 7 * 86400


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


@dataclass(frozen=True)
class Event:
    """Something the app should show: a message, a receipt, typing or presence."""

    kind: str
    conversation: str
    sender_user: str
    sender_device: int
    server_id: str = ""
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


IDENTITY_NOTICE = "safety number changed"


class ClientBase:
    def __init__(self, server: str, store_path: Path) -> None:
        self.store = LocalStore(store_path)
        saved = self.store.get_json("tokens")
        self.api = Api(server, Tokens(**saved) if saved else None, self._save_tokens)
        raw_keys = self.store.get("device_keys")
        self.keys: DeviceKeys | None = DeviceKeys.from_bytes(raw_keys) if raw_keys else None
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.queue_empty = asyncio.Event()
        self._stop = asyncio.Event()
        self._ratchets = RatchetLock(store_path)
        """Held while sessions are loaded, advanced and stored: a send while ``listen``
        decrypts (in this process or another on the same store) must not overwrite the
        state the other just saved."""
        self.live = LiveSocket()
        self.clock: Callable[[], float] = time.time
        """Unix seconds, for edit limits and disappearing messages: tests put a fake one."""
        self._prekeys_used = 0
        self._prekeys_checked = False  # on the current listen connection

    async def close(self) -> None:
        self._stop.set()
        await self.api.close()
        self.store.close()

    def _save_tokens(self, tokens: Tokens) -> None:
        self.store.put_json("tokens", tokens.__dict__)

    def _save_keys(self) -> None:
        assert self.keys is not None
        self.store.put("device_keys", self.keys.to_bytes())

    @property
    def user_id(self) -> str:
        assert self.api.tokens is not None, "register first"
        return self.api.tokens.user_id

    @property
    def device_id(self) -> int:
        assert self.api.tokens is not None, "register first"
        return self.api.tokens.device_id

    # contacts' identity keys -------------------------------------------------------
    async def _note_identity(self, user_id: str, identity_key: bytes) -> None:
        """Remember the identity key seen for ``user_id`` (from a bundle or a session
        set up by them). A change becomes a notice in the conversation's history and an
        ``identity`` event; the messages before it stay."""
        if user_id == self.user_id:
            return  # our own devices share our identity
        change = self.store.trust.observe(user_id, identity_key)
        if change is None:
            return
        notice_id = f"local-{uuid.uuid4()}"
        extra = {"was_verified": change.was_verified}
        self.store.add_message(
            StoredMessage(
                notice_id,
                user_id,
                user_id,
                0,
                int(time.time() * 1000),
                "identity",
                IDENTITY_NOTICE,
                extra,
                "notice",
            )
        )
        await self.events.put(
            Event("identity", user_id, user_id, 0, notice_id, IDENTITY_NOTICE, extra)
        )

    # key upkeep -------------------------------------------------------------------
    async def replenish_prekeys(self) -> int:
        """Upload a batch of one-time prekeys when the server holds fewer than the low water."""
        assert self.keys is not None
        count = int((await self.api.call("GET", "/v1/keys/count"))["count"])
        if count < PREKEY_LOW_WATER:
            fresh = self.keys.generate_one_time_prekeys(PREKEY_BATCH)
            self._save_keys()
            upload = DeviceKeys.one_time_prekeys_upload(fresh)
            count = int((await self.api.call("POST", "/v1/keys/one-time", upload))["count"])
        return count

    async def rotate_signed_prekey_if_due(
        self, max_age_s: int = SIGNED_PREKEY_MAX_AGE_S, *, now: int | None = None
    ) -> bool:
        """Replace the signed prekey once it is ``max_age_s`` old (the previous one stays
        usable for late session setups). ``listen()`` calls this on every connect."""
        assert self.keys is not None
        stamp = int(time.time()) if now is None else now
        if stamp - self.keys.signed_prekey.created_at < max_age_s:
            return False
        before = self.keys.to_bytes()
        self.keys.rotate_signed_prekey(now=stamp)
        self._save_keys()
        try:
            await self.api.call("PUT", "/v1/keys/signed", self.keys.signed_prekey_upload())
        except BaseException:
            self.keys = DeviceKeys.from_bytes(before)  # try again next time
            self._save_keys()
            raise
        return True

    async def _maybe_replenish(self) -> None:
        """Top up one-time prekeys after sessions were accepted from them: at the first use
        on a connection, then every ``PREKEY_CHECK_EVERY`` uses."""
        if self._prekeys_used == 0:
            return
        if self._prekeys_checked and self._prekeys_used < PREKEY_CHECK_EVERY:
            return
        self._prekeys_used, self._prekeys_checked = 0, True
        try:
            await self.replenish_prekeys()
        except ApiError as exc:
            log.warning("could not replenish one-time prekeys: %s", exc)
