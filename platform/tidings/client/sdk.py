"""The Tidings client: register, keep keys topped up, encrypt, send, receive, decrypt.

Everything secret stays in the local store; the server sees bundles of public keys
and ciphertext. Plaintext payloads are small JSON objects:

- ``{"t": "text", "text": ...}``
- ``{"t": "file", "media_id", "key", "digest", "name", "size"}`` (key/digest base64)
- ``{"t": "skd", "group", "dist"}`` a sender-key distribution, sent 1:1

Contacts' identity keys are remembered and a change is never accepted silently
(:mod:`tidings.client.identities`, :mod:`tidings.client.trust`): safety numbers,
verification, and a refusal to send to a verified contact whose key changed.

The copies for our own other devices carry one more field, ``"to"`` (the recipient),
so a linked device files them under the right conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tidings.client.backup import decrypt_backup, dump_store, encrypt_backup, load_store
from tidings.client.base import Event, b64, unb64
from tidings.client.crypto.identity import DeviceKeys, IdentityKeyPair
from tidings.client.crypto.media import decrypt_media, encrypt_media
from tidings.client.crypto.sender_keys import OwnSenderKey
from tidings.client.crypto.session import Session
from tidings.client.http import ApiError
from tidings.client.identities import Identities, SafetyNumber
from tidings.client.provisioning import (
    ProvisioningError,
    ProvisionPayload,
    link_address,
    new_link_request,
    open_blob,
    parse_link_request,
    seal,
)
from tidings.client.store import LocalStore, StoredMessage
from tidings.client.trust import SafetyNumberMismatch, Trust, UntrustedIdentity

__all__ = [
    "Client",
    "Event",
    "SafetyNumber",
    "SafetyNumberMismatch",
    "Trust",
    "UntrustedIdentity",
]

log = logging.getLogger("tidings.client")

SEND_ATTEMPTS = 4


class Client(Identities):
    """The SDK's entry point; see the module docstring for the payloads."""

    # account -----------------------------------------------------------------------
    async def register(
        self, phone: str, code: Callable[[str], Awaitable[str]], *, request_code: bool = True
    ) -> str:
        """Request a code (unless ``request_code`` is False: one was sent before), obtain
        it from ``code`` (a prompt, an SMS reader), register, and publish fresh keys.
        Returns the user id."""
        if request_code:
            await self.api.request_code(phone)
        registration_id = secrets.randbelow(16380) + 1
        tokens = await self.api.register(phone, await code(phone), registration_id, "sdk")
        self.store.put_json("registration_id", registration_id)
        self.keys = DeviceKeys.generate()
        self._save_keys()
        await self.api.call("PUT", "/v1/keys/identity", self.keys.identity_upload())
        await self.api.call("PUT", "/v1/keys/signed", self.keys.signed_prekey_upload())
        await self.replenish_prekeys()
        self.store.put_json("phone", phone)
        return tokens.user_id

    async def lookup(self, phones: list[str]) -> dict[str, str]:
        found: dict[str, str] = (
            await self.api.call("POST", "/v1/directory/lookup", {"phones": phones})
        )["users"]
        return found

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

    async def approve_link(self, new_device_request: str) -> None:
        """Primary device: :meth:`create_link` for a link request and leave the blob on
        the server for that device to fetch (:meth:`wait_for_approval`): the user only
        carries the request from the new device to this one."""
        blob = await self.create_link(new_device_request)
        address = link_address(new_device_request)
        await self.api.call("PUT", f"/v1/devices/provisioning/{address}", {"blob": blob})

    async def wait_for_approval(self, request: str, *, poll_s: float = 1.0) -> str:
        """New device: poll the server until the primary approved ``request`` (from
        :meth:`link_request`); returns the provisioning blob for :meth:`link`. Bound it
        with ``asyncio.timeout``: the primary may never approve."""
        path = f"/v1/devices/provisioning/{link_address(request)}"
        while True:
            try:
                answer = await self.api.call("GET", path, auth=False)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                await asyncio.sleep(poll_s)
                continue
            return str(answer["blob"])

    async def link(
        self, blob: str, device_name: str = "linked", *, phone: str | None = None
    ) -> int:
        """New device, step 2: open the blob, become a device of the account and publish
        a signed prekey (signed by the account identity) and one-time prekeys.
        With ``phone``, refuse (before redeeming the code) a blob for another number.
        Returns the new device id."""
        private = self.store.get("link_request")
        if private is None:
            raise ProvisioningError("no pending link request here; call link_request() first")
        payload = open_blob(blob, private)
        if phone is not None and payload.phone != phone:
            raise ProvisioningError(
                f"the approval came from the account of {payload.phone}, not {phone}; "
                "nothing was linked"
            )
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
    async def _encrypt(
        self, users: list[str], payload: dict[str, Any]
    ) -> dict[str, list[dict[str, Any]]]:
        assert self.keys is not None
        plaintext = json.dumps(payload).encode()
        out: dict[str, list[dict[str, Any]]] = {}
        async with self._ratchets.held():
            for user in users:
                for device in self.store.session_devices(user):
                    raw = self.store.session(user, device)
                    assert raw is not None
                    session = Session.from_bytes(raw)
                    body = await session.encrypt(plaintext)
                    self.store.put_session(user, device, session.to_bytes())
                    copy: dict[str, Any] = {"device": device, "body": b64(body)}
                    registration_id = self.store.registration_id(user, device)
                    if registration_id is not None:  # lets the server say "re-registered"
                        copy["registration_id"] = registration_id
                    out.setdefault(user, []).append(copy)
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
        """Encrypt ``payload`` for every device of ``user_id`` and our other devices.

        Refused with :class:`UntrustedIdentity` while a verified contact's changed key
        waits for the user's acceptance."""
        self.check_trusted(user_id)
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
        dist = b64(own.distribution().to_bytes())
        for member in members:
            if member not in reached and member != self.user_id:
                await self.send_direct(member, {"t": "skd", "group": group_id, "dist": dist})
                reached.append(member)
        own, data = own.encrypt(json.dumps(payload).encode())
        self.store.put_own_sender_key(group_id, own.to_bytes(), reached)
        body = {"id": str(uuid.uuid4()), "to": {"group": group_id}, "group_body": b64(data)}
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
            "key": b64(sealed.key),
            "digest": b64(sealed.digest),
            "name": path.name,
            "size": len(data),
        }
        return await self.send_direct(user_id, payload)

    async def fetch_file(self, extra: dict[str, Any]) -> bytes:
        """Download and decrypt the file a ``file`` message points to (digest checked)."""
        answer = await self.api.call("GET", f"/v1/media/{extra['media_id']}")
        blob = await self.api.download(answer["download"]["url"])
        return decrypt_media(blob, unb64(extra["key"]), unb64(extra["digest"]))
