"""The Tidings client: register, keep keys topped up, encrypt, send, receive, decrypt.

Everything secret stays in the local store; the server sees bundles of public keys
and ciphertext. Plaintext payloads are small JSON objects:

- ``{"t": "text", "text": ...}``
- ``{"t": "file", "media_id", "key", "digest", "name", "size"}`` (key/digest base64)
- ``{"t": "skd", "group", "dist"}`` a sender-key distribution, sent 1:1

The copies for our own other devices carry one more field, ``"to"`` (the recipient),
so a linked device files them under the right conversation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from tidings.client import sessions
from tidings.client.backup import decrypt_backup, dump_store, encrypt_backup, load_store
from tidings.client.crypto.errors import CryptoError, DuplicateMessage
from tidings.client.crypto.identity import DeviceKeys, IdentityKeyPair, PreKeyBundle
from tidings.client.crypto.media import decrypt_media, encrypt_media
from tidings.client.crypto.sender_key_wire import SenderKeyDistribution
from tidings.client.crypto.sender_keys import GroupReceiver, OwnSenderKey
from tidings.client.crypto.session import Session
from tidings.client.http import Api, ApiError, Tokens
from tidings.client.live import LiveSocket
from tidings.client.provisioning import (
    ProvisioningError,
    ProvisionPayload,
    new_link_request,
    open_blob,
    parse_link_request,
    seal,
)
from tidings.client.store import LocalStore, StoredMessage

log = logging.getLogger("tidings.client")

PREKEY_BATCH = 100
PREKEY_LOW_WATER = 20
SEND_ATTEMPTS = 4
PREKEY_CHECK_EVERY = 10
"""After the first one-time prekey used on a connection, re-check the count every N uses."""
SIGNED_PREKEY_MAX_AGE_S = 7 * 86400
RECEIPT_BATCH = 100
HEARTBEAT_S = 30.0
"""The server closes a socket silent for 90 s (4002); ping well within that."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
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


class Client:
    def __init__(self, server: str, store_path: Path) -> None:
        self.store = LocalStore(store_path)
        saved = self.store.get_json("tokens")
        self.api = Api(server, Tokens(**saved) if saved else None, self._save_tokens)
        raw_keys = self.store.get("device_keys")
        self.keys: DeviceKeys | None = DeviceKeys.from_bytes(raw_keys) if raw_keys else None
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.queue_empty = asyncio.Event()
        self._stop = asyncio.Event()
        self._ratchets = asyncio.Lock()
        """Held while sessions are loaded, advanced and stored: a send while ``listen``
        decrypts must not overwrite the state the other just saved."""
        self.live = LiveSocket()
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

    # account -----------------------------------------------------------------------
    async def register(
        self, phone: str, code: Callable[[str], Awaitable[str]], *, request_code: bool = True
    ) -> str:
        """Request a code (unless ``request_code`` is False: one was sent before), obtain
        it from ``code`` (a prompt, an SMS reader), register, and publish fresh keys.
        Returns the user id."""
        if request_code:
            await self.api.request_code(phone)
        tokens = await self.api.register(
            phone, await code(phone), secrets.randbelow(16380) + 1, "sdk"
        )
        self.keys = DeviceKeys.generate()
        self._save_keys()
        await self.api.call("PUT", "/v1/keys/identity", self.keys.identity_upload())
        await self.api.call("PUT", "/v1/keys/signed", self.keys.signed_prekey_upload())
        await self.replenish_prekeys()
        self.store.put_json("phone", phone)
        return tokens.user_id

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

    async def lookup(self, phones: list[str]) -> dict[str, str]:
        found: dict[str, str] = (
            await self.api.call("POST", "/v1/directory/lookup", {"phones": phones})
        )["users"]
        return found

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

    # linked devices ----------------------------------------------------------------
    def link_request(self) -> str:
        """New device, step 1: a text to show the user (and to give to the primary's
        :meth:`create_link`); its private half stays in this store until :meth:`link`."""
        if self.api.tokens is not None:
            raise ProvisioningError("this store already belongs to an account device")
        private, text = new_link_request()
        self.store.put("link_request", private)
        return text

    async def create_link(self, new_device_public: str) -> str:
        """Primary device: get a link code and seal it with the account identity to the new
        device's link request. The returned provisioning blob goes back to that device."""
        assert self.keys is not None, "register first"
        parse_link_request(new_device_public)  # refuse garbage before asking for a code
        answer = await self.api.call("POST", "/v1/devices/link-code")
        phone = self.store.get_json("phone")
        payload = ProvisionPayload(self.keys.identity.seed, answer["code"], self.user_id, phone)
        return seal(new_device_public, payload)

    async def link(self, blob: str, device_name: str = "linked") -> int:
        """New device, step 2: open the blob, become a device of the account and publish
        a signed prekey (signed by the account identity) and one-time prekeys.
        Returns the new device id."""
        private = self.store.get("link_request")
        if private is None:
            raise ProvisioningError("no pending link request here; call link_request() first")
        payload = open_blob(blob, private)
        tokens = await self.api.link_device(
            payload.link_code, device_name, secrets.randbelow(16380) + 1
        )
        if tokens.user_id != payload.user_id:
            raise ProvisioningError("the link code belongs to a different account")
        self.keys = DeviceKeys.from_identity(IdentityKeyPair(payload.identity_seed))
        self._save_keys()
        await self.api.call("PUT", "/v1/keys/signed", self.keys.signed_prekey_upload())
        await self.replenish_prekeys()
        self.store.delete("link_request")
        if payload.phone:
            self.store.put_json("phone", payload.phone)
        return tokens.device_id

    # backup ------------------------------------------------------------------------
    async def export_backup(self, passphrase: str) -> bytes:
        """Keys, tokens, sessions, sender keys and history, sealed under ``passphrase``
        (scrypt + AES-256-GCM; format in :mod:`tidings.client.backup`)."""
        return await asyncio.to_thread(encrypt_backup, dump_store(self.store), passphrase)

    @classmethod
    async def restore_backup(
        cls, blob: bytes, passphrase: str, server: str, store_path: Path
    ) -> Client:
        """A client for this device again, from :meth:`export_backup` output, in a new
        store. A wrong passphrase raises ``BackupError`` before anything is written."""
        snapshot = await asyncio.to_thread(decrypt_backup, blob, passphrase)
        store = LocalStore(store_path)
        try:
            load_store(store, snapshot)
        finally:
            store.close()
        return cls(server, store_path)

    # sessions ----------------------------------------------------------------------
    async def _open_sessions(self, user_id: str, devices: list[int] | None = None) -> None:
        """Fetch bundles and start sessions with ``user_id``'s devices (all when None)."""
        assert self.keys is not None
        paths = (
            [f"/v1/keys/{user_id}"]
            if devices is None
            else [f"/v1/keys/{user_id}/{d}" for d in devices]
        )
        for path in paths:
            answer = await self.api.call("GET", path)
            for device in answer["devices"]:
                if user_id == self.user_id and device["device_id"] == self.device_id:
                    continue
                bundle = PreKeyBundle.from_api(answer["identity_key"], device)
                session = await Session.initiate(self.keys, bundle)
                self.store.put_session(user_id, int(device["device_id"]), session.to_bytes())

    async def _encrypt(
        self, users: list[str], payload: dict[str, Any]
    ) -> dict[str, list[dict[str, Any]]]:
        assert self.keys is not None
        plaintext = json.dumps(payload).encode()
        out: dict[str, list[dict[str, Any]]] = {}
        async with self._ratchets:
            for user in users:
                for device in self.store.session_devices(user):
                    raw = self.store.session(user, device)
                    assert raw is not None
                    session = Session.from_bytes(raw)
                    body = await session.encrypt(plaintext)
                    self.store.put_session(user, device, session.to_bytes())
                    out.setdefault(user, []).append({"device": device, "body": _b64(body)})
        return out

    async def _repair(self, error: ApiError) -> None:
        """Make the local device list match the server's answer to a refused send."""
        details = error.details
        for user, devices in details.get("extra", {}).items():
            for device in devices:
                self.store.drop_session(user, int(device))
        for user, devices in details.get("stale", {}).items():
            for device in devices:
                self.store.drop_session(user, int(device))
            await self._open_sessions(user, [int(d) for d in devices])
        for user, devices in details.get("missing", {}).items():
            await self._open_sessions(user, [int(d) for d in devices])

    async def send_direct(self, user_id: str, payload: dict[str, Any]) -> str:
        """Encrypt ``payload`` for every device of ``user_id`` and our other devices."""
        if not self.store.session_devices(user_id) and user_id != self.user_id:
            await self._open_sessions(user_id)
        client_id = str(uuid.uuid4())
        for attempt in range(SEND_ATTEMPTS):
            ciphertexts = await self._encrypt([user_id], payload)
            if user_id != self.user_id:  # our other devices get a copy saying who it was for
                ciphertexts.update(await self._encrypt([self.user_id], {**payload, "to": user_id}))
            body = {"id": client_id, "to": {"user": user_id}, "ciphertexts": ciphertexts}
            try:
                answer = await self.api.call("POST", "/v1/messages", body)
            except ApiError as exc:
                if exc.status not in (409, 410) or attempt == SEND_ATTEMPTS - 1:
                    raise
                await self._repair(exc)
                continue
            server_id: str = answer["server_id"]
            self._remember_sent(server_id, user_id, answer["timestamp"], payload)
            return server_id
        raise AssertionError("unreachable")

    def _remember_sent(
        self, server_id: str, conversation: str, ts: int, payload: dict[str, Any]
    ) -> None:
        if payload["t"] in ("text", "file"):
            text = payload.get("text", payload.get("name", ""))
            self.store.add_message(
                StoredMessage(
                    server_id,
                    conversation,
                    self.user_id,
                    self.device_id,
                    ts,
                    payload["t"],
                    text,
                    {k: v for k, v in payload.items() if k not in ("t", "text")},
                    "sent",
                )
            )

    async def send_text(self, user_id: str, text: str) -> str:
        return await self.send_direct(user_id, {"t": "text", "text": text})

    # groups ------------------------------------------------------------------------
    async def create_group(self, name: str, members: list[str]) -> str:
        group_id: str = (
            await self.api.call("POST", "/v1/groups", {"name": name, "members": members})
        )["group_id"]
        return group_id

    async def add_members(self, group_id: str, members: list[str]) -> None:
        await self.api.call("POST", f"/v1/groups/{group_id}/members", {"user_ids": members})

    async def remove_member(self, group_id: str, member: str) -> None:
        await self.api.call("DELETE", f"/v1/groups/{group_id}/members/{member}")

    async def send_group(self, group_id: str, payload: dict[str, Any]) -> str:
        """One sender-key ciphertext for the whole group; rekeys after a removal."""
        members = sorted((await self.api.call("GET", f"/v1/groups/{group_id}"))["members"])
        held = self.store.own_sender_key(group_id)
        if held is None or set(held[1]) - set(members):
            own, reached = OwnSenderKey.create(group_id), []  # new key: removed members lose it
        else:
            own, reached = OwnSenderKey.from_bytes(held[0]), held[1]
        dist = _b64(own.distribution().to_bytes())
        for member in members:
            if member not in reached and member != self.user_id:
                await self.send_direct(member, {"t": "skd", "group": group_id, "dist": dist})
                reached.append(member)
        own, data = own.encrypt(json.dumps(payload).encode())
        self.store.put_own_sender_key(group_id, own.to_bytes(), reached)
        body = {"id": str(uuid.uuid4()), "to": {"group": group_id}, "group_body": _b64(data)}
        answer = await self.api.call("POST", "/v1/messages", body)
        self._remember_sent(answer["server_id"], f"group:{group_id}", answer["timestamp"], payload)
        return str(answer["server_id"])

    async def send_group_text(self, group_id: str, text: str) -> str:
        return await self.send_group(group_id, {"t": "text", "text": text})

    # media -------------------------------------------------------------------------
    async def send_file(self, user_id: str, path: Path) -> str:
        data = await asyncio.to_thread(path.read_bytes)
        sealed = encrypt_media(data)
        answer = await self.api.call("POST", "/v1/media", {"size": len(sealed.blob)})
        await self.api.upload(answer["upload"]["url"], sealed.blob, answer["upload"]["headers"])
        payload = {
            "t": "file",
            "media_id": answer["media_id"],
            "key": _b64(sealed.key),
            "digest": _b64(sealed.digest),
            "name": path.name,
            "size": len(data),
        }
        return await self.send_direct(user_id, payload)

    async def fetch_file(self, extra: dict[str, Any]) -> bytes:
        """Download and decrypt the file a ``file`` message points to (digest checked)."""
        answer = await self.api.call("GET", f"/v1/media/{extra['media_id']}")
        blob = await self.api.download(answer["download"]["url"])
        return decrypt_media(blob, _unb64(extra["key"]), _unb64(extra["digest"]))

    # receiving ---------------------------------------------------------------------
    async def handle(self, envelope: dict[str, Any]) -> Event | None:
        """Decrypt and store one delivered envelope; None when there is nothing to show."""
        server_id = envelope["server_id"]
        if self.store.processed(server_id):
            return None  # at-least-once delivery: seen before
        sender = envelope["from"]
        user, device = sender["user"], int(sender["device"])
        event: Event | None = None
        if envelope["type"] == "receipt":
            receipt = envelope["receipt"]
            self.store.set_status(receipt["message_ids"], receipt["kind"])
            event = Event("receipt", user, user, device, server_id, receipt["kind"], receipt)
        elif envelope["type"] == "message":
            async with self._ratchets:
                event = await self._decrypt_message(envelope, user, device)
        self.store.mark_processed(server_id)
        return event

    async def _decrypt_message(
        self, envelope: dict[str, Any], user: str, device: int
    ) -> Event | None:
        assert self.keys is not None
        data = _unb64(envelope["body"])
        group = envelope.get("group")
        try:
            if group is not None:
                raw = self.store.group_receiver(group)
                receiver = GroupReceiver.from_bytes(raw) if raw else GroupReceiver(group)
                plaintext = receiver.decrypt(f"{user}:{device}", data)
                self.store.put_group_receiver(group, receiver.to_bytes())
            else:
                unused = self.keys.one_time_prekey_count
                plaintext = await sessions.decrypt(self.keys, self.store, user, device, data)
                self._save_keys()
                self._prekeys_used += unused - self.keys.one_time_prekey_count
        except DuplicateMessage:
            return None
        except CryptoError as exc:
            log.warning(
                "dropping undecryptable message %s from %s/%s: %s",
                envelope["server_id"],
                user,
                device,
                exc,
            )
            return Event(
                "undecryptable", group or user, user, device, envelope["server_id"], str(exc)
            )
        payload = json.loads(plaintext)
        if payload["t"] == "skd":
            raw = self.store.group_receiver(payload["group"])
            receiver = GroupReceiver.from_bytes(raw) if raw else GroupReceiver(payload["group"])
            receiver.process_distribution(
                f"{user}:{device}", SenderKeyDistribution.from_bytes(_unb64(payload["dist"]))
            )
            self.store.put_group_receiver(payload["group"], receiver.to_bytes())
            return None
        # A copy of what our own other device sent names the real conversation.
        sent_to = payload.pop("to", None) if user == self.user_id and not group else None
        conversation = f"group:{group}" if group else str(sent_to or user)
        text = payload.get("text", payload.get("name", ""))
        extra = {k: v for k, v in payload.items() if k not in ("t", "text")}
        self.store.add_message(
            StoredMessage(
                envelope["server_id"],
                conversation,
                user,
                device,
                envelope["timestamp"],
                payload["t"],
                text,
                extra,
                "sent" if sent_to else "received",
            )
        )
        return Event(payload["t"], conversation, user, device, envelope["server_id"], text, extra)

    async def listen(self, *, until_queue_empty: bool = False) -> None:
        """Keep a WebSocket open (reconnecting with backoff), ack after storing, and put
        what arrives on ``events``. With ``until_queue_empty``, return after the backlog."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                assert self.api.tokens is not None
                async with websockets.connect(
                    self.api.ws_url,
                    additional_headers={"Authorization": f"Bearer {self.api.tokens.access_token}"},
                ) as ws:
                    backoff = 0.5
                    if await self._pump(ws, until_queue_empty):
                        return
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 4001:
                    log.warning("this device connected elsewhere; stopping")
                    return
                if exc.rcvd is not None and exc.rcvd.code == 4401:
                    await self.api.refresh()
            except OSError as exc:
                log.info("connection failed (%s); retrying in %.1fs", exc, backoff)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._stop.wait()
            backoff = min(backoff * 2, 30.0)

    async def _pump(self, ws: Any, until_queue_empty: bool) -> bool:
        heartbeat = asyncio.create_task(self._heartbeat(ws))
        self.live.attach(ws)  # requests (receipts, typing, presence) may use it now
        self._prekeys_checked = False
        try:
            try:
                await self.rotate_signed_prekey_if_due()
            except ApiError as exc:
                log.warning("could not rotate the signed prekey: %s", exc)
            return await self._receive(ws, until_queue_empty)
        finally:
            self.live.detach()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _heartbeat(self, ws: Any) -> None:
        """Application-level pings: protocol pings do not count as frames for the server."""
        beats = 0
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            beats += 1
            await ws.send(json.dumps({"id": f"hb{beats}", "type": "ping"}))

    async def _receive(self, ws: Any, until_queue_empty: bool) -> bool:
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "deliver":
                event = await self.handle(frame["body"])
                await self.live.send({"id": frame["id"], "type": "response", "status": 200})
                await self._maybe_replenish()
                if event is not None:
                    await self.events.put(event)
            elif kind == "response":
                self.live.resolve(frame)  # answers to ws_request (heartbeats: ignored)
            elif kind == "queue-empty":
                self.queue_empty.set()
                if until_queue_empty:
                    return True
            elif kind in ("typing", "presence"):
                body = frame.get("body", {})
                sender = body.get("from", {"user": body.get("user", ""), "device": 0})
                group = body.get("group")
                conversation = f"group:{group}" if group else sender["user"]
                await self.events.put(
                    Event(kind, conversation, sender["user"], int(sender["device"]), extra=body)
                )
        return False

    # live requests (need a running listen()) ---------------------------------------
    async def ws_request(
        self, kind: str, body: dict[str, Any] | None = None, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send a request over the socket ``listen()`` keeps open and return the answer
        body; waits up to ``timeout`` for a connection. Refusals raise :class:`ApiError`."""
        return await self.live.request(kind, body, timeout=timeout)

    async def mark_read(self, conversation_user: str, server_ids: list[str]) -> list[str]:
        """Send ``read`` receipts for messages from ``conversation_user`` (their original
        sender) and mark them read locally. Returns the receipts' server ids."""
        receipts = []
        for start in range(0, len(server_ids), RECEIPT_BATCH):
            batch = server_ids[start : start + RECEIPT_BATCH]
            body = {"to": conversation_user, "kind": "read", "message_ids": batch}
            receipts.append(str((await self.ws_request("receipt", body))["server_id"]))
        if server_ids:
            self.store.set_status(server_ids, "read")
        return receipts

    async def typing(self, to_user_or_group: str, started: bool) -> None:
        """Typing started/stopped to a user id or ``group:<id>`` (ephemeral, online only)."""
        prefix = "group:"
        target = (
            {"group": to_user_or_group[len(prefix) :]}
            if to_user_or_group.startswith(prefix)
            else {"user": to_user_or_group}
        )
        body = {"to": target, "state": "started" if started else "stopped"}
        await self.ws_request("typing", body)

    async def subscribe_presence(self, user_ids: list[str]) -> list[dict[str, Any]]:
        """Current presence of each (visible) user; changes then arrive as ``presence``
        events while the socket stays open."""
        answer = await self.ws_request("presence.subscribe", {"users": user_ids})
        presence: list[dict[str, Any]] = answer["presence"]
        return presence

    async def unsubscribe_presence(self, user_ids: list[str]) -> None:
        await self.ws_request("presence.unsubscribe", {"users": user_ids})
