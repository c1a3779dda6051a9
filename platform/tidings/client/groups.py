"""Groups: membership changes that tell the members, sender-key sends, group files.

Every change made through these methods is followed by an encrypted notice
(:mod:`tidings.client.notices`) that the members' clients show and keep in the group's
history; ``notify=False`` skips it (load generators that only measure messages).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

from tidings.client import content, effects, names, notices
from tidings.client.base import b64
from tidings.client.crypto.sender_keys import OwnSenderKey
from tidings.client.http import ApiError
from tidings.client.sending import Sending

SENDER_KEY_ATTEMPTS = 5


class GroupChat(Sending):
    async def group_info(self, group_id: str) -> dict[str, Any]:
        """The server's view of a group (``members``: user id -> role), with ``name``
        as this device knows it (a rename is a notice only members read)."""
        info: dict[str, Any] = await self.api.call("GET", f"/v1/groups/{group_id}")
        known = names.book(self.store, names.GROUPS).get(group_id)
        if known is None:
            names.remember(self.store, names.GROUPS, group_id, str(info["name"]))
        info["name"] = known or info["name"]
        return info

    async def create_group(self, name: str, members: list[str], *, notify: bool = True) -> str:
        group_id: str = (
            await self.api.call("POST", "/v1/groups", {"name": name, "members": members})
        )["group_id"]
        names.remember(self.store, names.GROUPS, group_id, name)
        if notify and members:
            await self._announce(group_id, "created", members)
        return group_id

    async def add_members(self, group_id: str, members: list[str], *, notify: bool = True) -> None:
        await self.api.call("POST", f"/v1/groups/{group_id}/members", {"user_ids": members})
        if notify:
            await self._announce(group_id, "added", members)

    async def remove_member(self, group_id: str, member: str, *, notify: bool = True) -> None:
        await self.api.call("DELETE", f"/v1/groups/{group_id}/members/{member}")
        if notify:
            payload = await self._announce(group_id, "removed", [member])
            # The group's new sender key no longer reaches them: they hear it 1:1.
            with contextlib.suppress(ApiError):
                await self.send_direct(member, payload)

    async def leave_group(self, group_id: str, *, notify: bool = True) -> None:
        """Say goodbye to the group (while still a member), then leave it."""
        if notify:
            await self._announce(group_id, "left", [])
        await self.api.call("POST", f"/v1/groups/{group_id}/leave")

    async def set_admin(
        self, group_id: str, member: str, admin: bool, *, notify: bool = True
    ) -> None:
        """Make ``member`` an admin, or a plain member again (admins only)."""
        method = "PUT" if admin else "DELETE"
        await self.api.call(method, f"/v1/groups/{group_id}/admins/{member}")
        if notify:
            await self._announce(group_id, "admin" if admin else "member", [member])

    async def rename_group(self, group_id: str, name: str) -> None:
        """Rename a group for its members: an encrypted notice, sent by an admin."""
        name = notices.check_name(name)
        info = await self.group_info(group_id)
        if info["members"].get(self.user_id) != "admin":
            raise ApiError(403, "forbidden", "only the group's admins may rename it", {})
        names.remember(self.store, names.GROUPS, group_id, name)
        await self._announce(group_id, "renamed", [])

    async def _announce(self, group_id: str, op: str, members: list[str]) -> dict[str, Any]:
        name = names.book(self.store, names.GROUPS).get(group_id, "")
        payload = notices.notice(op, group_id, name, members)
        await self.send_group(group_id, payload)
        return payload

    async def send_group(
        self, group_id: str, payload: dict[str, Any], *, client_id: str | None = None
    ) -> str:
        """One sender-key ciphertext for the whole group; rekeys after a removal.

        The sender key advances under the ratchet lock; if another process on this store
        sent to the group while the distributions went out, start over from its state
        (reusing a step of the chain would repeat a message key)."""
        for _ in range(SENDER_KEY_ATTEMPTS):
            members = sorted((await self.api.call("GET", f"/v1/groups/{group_id}"))["members"])
            held = self.store.own_sender_key(group_id)
            if held is None or set(held[1]) - set(members):
                own, reached = OwnSenderKey.create(group_id), []  # removed members lose it
            else:
                own, reached = OwnSenderKey.from_bytes(held[0]), list(held[1])
            dist = b64(own.distribution().to_bytes())
            for member in members:
                if member not in reached and member != self.user_id:
                    await self.send_direct(member, {"t": "skd", "group": group_id, "dist": dist})
                    reached.append(member)
            async with self._ratchets.held():
                if self.store.own_sender_key(group_id) != held:
                    continue
                own, data = own.encrypt(json.dumps(payload).encode())
                self.store.put_own_sender_key(group_id, own.to_bytes(), reached)
            break
        else:
            raise ApiError(0, "busy", f"could not send to group {group_id}: try again", {})
        body = {
            "id": client_id or str(uuid.uuid4()),
            "to": {"group": group_id},
            "group_body": b64(data),
        }
        answer = await self.api.call("POST", "/v1/messages", body)
        self._remember_sent(answer["server_id"], f"group:{group_id}", answer["timestamp"], payload)
        return str(answer["server_id"])

    async def send_group_text(
        self, group_id: str, text: str, *, client_id: str | None = None
    ) -> str:
        payload = content.text(text, effects.timer(self.store, f"group:{group_id}"))
        return await self.send_group(group_id, payload, client_id=client_id)

    async def send_group_file(self, group_id: str, path: Path) -> str:
        """Encrypt and upload once; the key goes to the members inside the group message."""
        payload = await self.upload_file(path)
        ttl = effects.timer(self.store, f"group:{group_id}")
        return await self.send_group(group_id, {**payload, "ttl": ttl} if ttl else payload)
