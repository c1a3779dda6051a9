"""The SDK's message features: replies, reactions, edits, deletes for everyone and
disappearing-messages timers (content in :mod:`tidings.client.content`, effects on the
history in :mod:`tidings.client.effects`).

Conversations are named as everywhere in the SDK: a user id, or ``group:GROUP_ID``. A
reaction, edit or delete goes to the conversation of the message it is about, so it
only needs that message's server id.
"""

from __future__ import annotations

from typing import Any

from tidings.client import content, effects
from tidings.client.groups import GroupChat
from tidings.client.store import StoredMessage

GROUP = "group:"


class MessageFeatures(GroupChat):
    async def send_to(
        self, conversation: str, payload: dict[str, Any], *, client_id: str | None = None
    ) -> str:
        """Send any payload to a user id or ``group:ID``; returns the server id."""
        if conversation.startswith(GROUP):
            return await self.send_group(
                conversation.removeprefix(GROUP), payload, client_id=client_id
            )
        return await self.send_direct(conversation, payload, client_id=client_id)

    def _target(self, server_id: str, conversation: str | None = None) -> StoredMessage:
        message = self.store.message(server_id)
        if message is None or message.kind not in ("text", "file"):
            raise content.Refused(f"no message {server_id} in the local history")
        if conversation is not None and message.conversation != conversation:
            raise content.Refused(f"message {server_id} belongs to another conversation")
        if message.extra.get("deleted"):
            raise content.Refused(f"message {server_id} was deleted")
        return message

    async def send_reply(
        self, conversation: str, reply_to: str, text: str, *, client_id: str | None = None
    ) -> str:
        """A text quoting the start of message ``reply_to`` of the same conversation."""
        payload = self.reply_content(conversation, reply_to, text)
        return await self.send_to(conversation, payload, client_id=client_id)

    async def react(self, server_id: str, emoji: str) -> str:
        """React to a message (one reaction each: it replaces ours; "" removes it)."""
        return await self.send_to(*self.reaction_content(server_id, emoji))

    async def edit(self, server_id: str, text: str) -> str:
        """Replace the text of one of our messages, for everyone, within the time limit."""
        return await self.send_to(*self.edit_content(server_id, text))

    async def delete_for_everyone(self, server_id: str) -> str:
        """Delete one of our messages on every device of the conversation, within the
        time limit (what others already copied elsewhere is beyond anyone's reach)."""
        return await self.send_to(*self.delete_content(server_id))

    # The content alone, checked against the local history now, so that the outbox can
    # keep it while the server cannot be reached and send it later as it was asked for.
    def reply_content(self, conversation: str, reply_to: str, text: str) -> dict[str, Any]:
        quoted = self._target(reply_to, conversation)
        ttl = effects.timer(self.store, conversation)
        return content.reply(text, reply_to, quoted.text, ttl)

    def reaction_content(self, server_id: str, emoji: str) -> tuple[str, dict[str, Any]]:
        """(conversation, payload) of a reaction to message ``server_id``."""
        target = self._target(server_id)
        return target.conversation, content.reaction(server_id, emoji)

    def edit_content(self, server_id: str, text: str) -> tuple[str, dict[str, Any]]:
        target = self._changeable(content.EDIT, server_id)
        return target.conversation, content.edit(server_id, text)

    def delete_content(self, server_id: str) -> tuple[str, dict[str, Any]]:
        target = self._changeable(content.DELETE, server_id)
        return target.conversation, content.delete(server_id)

    def _changeable(self, kind: str, server_id: str) -> StoredMessage:
        """Refused here as every receiver would ignore it: not ours, or too late."""
        target = self._target(server_id)
        now_ms = int(self.clock() * 1000)
        why = content.change_refusal(
            kind, target.sender_user, target.timestamp, self.user_id, now_ms
        )
        if why is None and target.kind not in effects.CHANGEABLE[kind]:
            why = f"a {target.kind} cannot be {kind}ed"
        if why is not None:
            raise content.Refused(why)
        return target

    async def set_timer(self, conversation: str, seconds: int) -> str:
        """Turn disappearing messages on (``seconds`` after each message is sent) or off
        (0) for everyone in the conversation."""
        return await self.send_to(conversation, content.timer(seconds))

    def timer(self, conversation: str) -> int:
        """The conversation's disappearing-messages timer in seconds (0: off)."""
        return effects.timer(self.store, conversation)
