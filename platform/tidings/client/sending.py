"""Sending: 1:1 encryption to every device of a user and our own, and files."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from tidings.client import content, effects, names, notices
from tidings.client.base import b64, unb64
from tidings.client.crypto.media import decrypt_media, encrypt_media
from tidings.client.crypto.session import Session
from tidings.client.http import ApiError
from tidings.client.identities import Identities
from tidings.core.limits import Limits

SEND_ATTEMPTS = 4
MEDIA_BYTES = Limits().media_bytes
"""The largest encrypted file the server takes (its default limit): checked before
uploading or queueing, so the outbox never keeps a file that could not go."""
SHOWN_KINDS = ("text", "file")
"""Payloads kept in the history as messages (notices are kept by their own code)."""


class FileTooLarge(ValueError):
    """A file above the size limit: refused before it is read into the outbox."""


class Sending(Identities):
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

    async def send_direct(
        self, user_id: str, payload: dict[str, Any], *, client_id: str | None = None
    ) -> str:
        """Encrypt ``payload`` for every device of ``user_id`` and our other devices.

        ``client_id`` (default: a fresh one) is what the server dedupes by: a retry of a
        send that may have arrived (the outbox) passes the id of the first attempt.
        Refused with :class:`UntrustedIdentity` while a verified contact's changed key
        waits for the user's acceptance."""
        self.check_trusted(user_id)
        if not self.store.session_devices(user_id) and user_id != self.user_id:
            await self._open_sessions(user_id)
        client_id = client_id or str(uuid.uuid4())
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
        if payload["t"] == notices.KIND and conversation.startswith("group:"):
            # Its own notice: the name it carries is the one this device gave the group.
            named = bool(payload.get("name")) and (
                payload.get("op") == "renamed"
                or payload["group"] not in names.book(self.store, names.GROUPS)
            )
            self._store_notice(server_id, self.user_id, self.device_id, ts, payload, "sent", named)
        sender = (self.user_id, self.device_id)
        if payload["t"] in content.CONTROL:
            effects.apply_control(
                self.store, server_id, conversation, sender, ts, payload, self.user_id
            )
        elif payload["t"] in (*SHOWN_KINDS, content.REPLY):
            effects.keep(self.store, server_id, conversation, sender, ts, payload, "sent")

    async def send_text(self, user_id: str, text: str, *, client_id: str | None = None) -> str:
        payload = content.text(text, effects.timer(self.store, user_id))
        return await self.send_direct(user_id, payload, client_id=client_id)

    # media -------------------------------------------------------------------------
    async def upload_file(self, path: Path) -> dict[str, Any]:
        """Encrypt and upload a file; returns the ``file`` payload that points to it
        (send it with :meth:`send_direct` or ``send_group``)."""
        payload, blob = await seal_file(path)
        return {**payload, "media_id": await self.upload_sealed(blob)}

    async def upload_sealed(self, blob: bytes) -> str:
        """Upload an encrypted file (:func:`seal_file`); returns its media id."""
        answer = await self.api.call("POST", "/v1/media", {"size": len(blob)})
        await self.api.upload(answer["upload"]["url"], blob, answer["upload"]["headers"])
        return str(answer["media_id"])

    async def send_file(self, user_id: str, path: Path) -> str:
        payload = await self.upload_file(path)
        ttl = effects.timer(self.store, user_id)
        return await self.send_direct(user_id, {**payload, "ttl": ttl} if ttl else payload)

    async def fetch_file(self, extra: dict[str, Any]) -> bytes:
        """Download and decrypt the file a ``file`` message points to (digest checked)."""
        answer = await self.api.call("GET", f"/v1/media/{extra['media_id']}")
        blob = await self.api.download(answer["download"]["url"])
        return decrypt_media(blob, unb64(extra["key"]), unb64(extra["digest"]))


async def seal_file(path: Path) -> tuple[dict[str, Any], bytes]:
    """Read and encrypt a file: its ``file`` payload (all but the media id, known once
    uploaded) and the encrypted bytes to upload. Refused above the server's size
    limit before anything is uploaded (or queued)."""
    too_large = FileTooLarge(f"{path.name}: a file is at most {MEDIA_BYTES} bytes, encrypted")
    if (await asyncio.to_thread(path.stat)).st_size > MEDIA_BYTES:  # not even read
        raise too_large
    data = await asyncio.to_thread(path.read_bytes)
    sealed = encrypt_media(data)
    if len(sealed.blob) > MEDIA_BYTES:
        raise too_large
    payload = {
        "t": "file",
        "key": b64(sealed.key),
        "digest": b64(sealed.digest),
        "name": path.name,
        "size": len(data),
    }
    return payload, sealed.blob
