"""The Tidings client: register, keep keys topped up, encrypt, send, receive, decrypt.

Everything secret stays in the local store; the server sees bundles of public keys
and ciphertext. Plaintext payloads are small JSON objects:

- ``{"t": "text", "text": ...}``
- ``{"t": "file", "media_id", "key", "digest", "name", "size"}`` (key/digest base64)
- ``{"t": "skd", "group", "dist"}`` a sender-key distribution, sent 1:1 (internal:
  never shown)
- ``{"t": "group", "op", "group", "name", "members"}`` a group notice
  (:mod:`tidings.client.notices`)
- ``reply``, ``reaction``, ``edit``, ``delete`` and ``timer``: message features
  (:mod:`tidings.client.content`, :mod:`tidings.client.features`); a plaintext that is
  not such an object reads as a text

Sending lives in :mod:`tidings.client.sending`, groups in :mod:`tidings.client.groups`,
receiving in :mod:`tidings.client.receiving`.

Contacts' identity keys are remembered and a change is never accepted silently
(:mod:`tidings.client.identities`, :mod:`tidings.client.trust`): safety numbers,
verification, and a refusal to send to a verified contact whose key changed.

The copies for our own other devices carry one more field, ``"to"`` (the recipient),
so a linked device files them under the right conversation.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from tidings.client.backup import decrypt_backup, dump_store, encrypt_backup, load_store
from tidings.client.base import Event
from tidings.client.crypto.identity import DeviceKeys, IdentityKeyPair
from tidings.client.features import MessageFeatures
from tidings.client.http import ApiError
from tidings.client.identities import SafetyNumber
from tidings.client.provisioning import (
    ProvisioningError,
    ProvisionPayload,
    link_address,
    new_link_request,
    open_blob,
    parse_link_request,
    seal,
)
from tidings.client.store import LocalStore
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


class Client(MessageFeatures):
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
