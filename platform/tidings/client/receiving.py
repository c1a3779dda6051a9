"""Receiving: the live WebSocket, decrypting and storing deliveries, live requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import websockets

from tidings.client import content, effects, names, notices, sessions
from tidings.client.base import ClientBase, Event, unb64
from tidings.client.crypto.errors import CryptoError, DuplicateMessage
from tidings.client.crypto.sender_key_wire import SenderKeyDistribution
from tidings.client.crypto.sender_keys import GroupReceiver
from tidings.client.http import ApiError
from tidings.client.store import StoredMessage

log = logging.getLogger("tidings.client")

RECEIPT_BATCH = 100
HEARTBEAT_S = 30.0
"""The server closes a socket silent for 90 s (4002); ping well within that."""
RECONNECT_MAX_S = 30.0
"""The longest wait between reconnects while no gateway answers at all."""
FAILOVER_RETRY_S = 4.0
"""The longest wait while another region answers but the one serving this account does
not: its region is lost and its shards are moving, which takes the peers' detection
window; asking again this often finds the new region soon after the move."""


def reconnect_wait(previous: float, *, region_answered: bool) -> float:
    """Seconds before the next reconnect after waiting ``previous``: doubling, up to
    ``FAILOVER_RETRY_S`` when a region answered where this account is served (only its
    region is lost) and up to ``RECONNECT_MAX_S`` when none did."""
    return min(previous * 2, FAILOVER_RETRY_S if region_answered else RECONNECT_MAX_S)


class Receiving(ClientBase):
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
            async with self._ratchets.held():
                event = await self._decrypt_message(envelope, user, device)
        self.store.mark_processed(server_id)
        if event is not None and event.server_id in self.sweep_expired():
            return None  # arrived after its timer ran out (this device was offline)
        return event

    async def _decrypt_message(
        self, envelope: dict[str, Any], user: str, device: int
    ) -> Event | None:
        assert self.keys is not None
        data = unb64(envelope["body"])
        group = envelope.get("group")
        sender_identity: bytes | None = None
        try:
            if group is not None:
                raw = self.store.group_receiver(group)
                receiver = GroupReceiver.from_bytes(raw) if raw else GroupReceiver(group)
                plaintext = receiver.decrypt(f"{user}:{device}", data)
                self.store.put_group_receiver(group, receiver.to_bytes())
            else:
                unused = self.keys.one_time_prekey_count
                plaintext, sender_identity = await sessions.decrypt_from(
                    self.keys, self.store, user, device, data
                )
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
        if sender_identity is not None:
            await self._note_identity(user, sender_identity)
        payload = content.decode(plaintext)
        if payload["t"] == "skd":
            raw = self.store.group_receiver(payload["group"])
            receiver = GroupReceiver.from_bytes(raw) if raw else GroupReceiver(payload["group"])
            receiver.process_distribution(
                f"{user}:{device}", SenderKeyDistribution.from_bytes(unb64(payload["dist"]))
            )
            self.store.put_group_receiver(payload["group"], receiver.to_bytes())
            return None
        if payload["t"] == notices.KIND:
            return await self._receive_notice(envelope, payload, user, device, group)
        # A copy of what our own other device sent names the real conversation.
        sent_to = payload.pop("to", None) if user == self.user_id and not group else None
        conversation = f"group:{group}" if group else str(sent_to or user)
        sender, ts = (user, device), envelope["timestamp"]
        if payload["t"] in content.CONTROL:
            return effects.apply_control(
                self.store, envelope["server_id"], conversation, sender, ts, payload, self.user_id
            )
        status = "sent" if sent_to else "received"
        kept = effects.keep(
            self.store, envelope["server_id"], conversation, sender, ts, payload, status
        )
        return Event(kept.kind, conversation, user, device, kept.server_id, kept.text, kept.extra)

    def sweep_expired(self) -> list[str]:
        """Remove the disappearing messages whose time has come (by ``self.clock``) from
        the history and the search index; returns their server ids. Runs after every
        delivery; an app that stays open calls it now and then too (the chat does)."""
        return effects.sweep(self.store, int(self.clock() * 1000))

    async def _receive_notice(
        self,
        envelope: dict[str, Any],
        payload: dict[str, Any],
        user: str,
        device: int,
        group: str | None,
    ) -> Event | None:
        """A group notice: kept in the group's history and shown. It arrives through the
        group, or 1:1 to a removed member; one naming another group is dropped."""
        try:
            notice = notices.parse(payload)
        except notices.BadNotice as exc:
            log.warning("ignoring group notice %s: %s", envelope["server_id"], exc)
            return None
        if group is not None and notice["group"] != group:
            log.warning("ignoring notice %s about another group", envelope["server_id"])
            return None
        if group is None and notice["op"] != "removed":
            return None  # only a removal travels 1:1
        if notice["op"] == "renamed" and not await self._is_admin(notice["group"], user):
            log.warning("ignoring a rename of %s by a non-admin", notice["group"])
            return None
        status = "sent" if user == self.user_id else "received"
        named = await self._names_group(notice, user)
        return self._store_notice(
            envelope["server_id"], user, device, envelope["timestamp"], notice, status, named
        )

    async def _names_group(self, notice: dict[str, Any], user: str) -> bool:
        """Whether the notice's group name is to be taken: a checked rename, a group not
        known yet, or a differing name in a change only admins make, sent by an admin
        now. So a member who missed a rename (removed meanwhile, then added back) learns
        the name from the notice that adds them, while a member's forged notice renames
        nothing."""
        name, group_id = notice.get("name", ""), notice["group"]
        known = names.book(self.store, names.GROUPS).get(group_id)
        if not name or name == known:
            return False
        if notice["op"] == "renamed" or known is None:
            return True
        return notice["op"] in notices.ADMIN_OPS and await self._is_admin(group_id, user)

    async def _is_admin(self, group_id: str, user_id: str) -> bool:
        """Whether ``user_id`` is an admin of the group now (the server keeps roles; a
        rename is only a notice, so receivers check who sent it). Unreachable server:
        believed, since a name is cosmetic and the notice cannot be fetched again."""
        try:
            info = await self.api.call("GET", f"/v1/groups/{group_id}")
        except ApiError as exc:
            if exc.status in (403, 404):
                return False
            log.warning("could not check who renamed group %s: %s", group_id, exc)
            return True
        return bool(info["members"].get(user_id) == "admin")

    def _store_notice(
        self,
        server_id: str,
        user: str,
        device: int,
        timestamp: int,
        notice: dict[str, Any],
        status: str,
        named: bool,
    ) -> Event:
        group_id = notice["group"]
        if named:
            names.remember(self.store, names.GROUPS, group_id, notice["name"])
        text = notices.describe(notice, user, self.user_id, lambda u: names.person(self.store, u))
        extra = {k: v for k, v in notice.items() if k != "t"}
        conversation = f"group:{group_id}"
        self.store.add_message(
            StoredMessage(
                server_id, conversation, user, device, timestamp, "notice", text, extra, status
            )
        )
        return Event("notice", conversation, user, device, server_id, text, extra)

    async def listen(self, *, until_queue_empty: bool = False) -> None:
        """Keep a WebSocket open (reconnecting with backoff), ack after storing, and put
        what arrives on ``events``. With ``until_queue_empty``, return after the backlog."""
        backoff = 0.5
        while not self._stop.is_set():
            owner = None
            try:
                # The region serving this account now (after a failover, not its home).
                owner = await self.api.follow()
                used = self.api.tokens
                assert used is not None
                async with websockets.connect(
                    self.api.ws_url,
                    additional_headers={"Authorization": f"Bearer {used.access_token}"},
                ) as ws:
                    backoff = 0.5
                    if await self._pump(ws, until_queue_empty):
                        return
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 4001:
                    log.warning("this device connected elsewhere; stopping")
                    return
                if exc.rcvd is not None and exc.rcvd.code == 4401:
                    await self.api.refresh(used)
            except (OSError, websockets.InvalidHandshake) as exc:
                # Refused, or taken and dropped before the handshake (a load balancer in
                # front of a lost region does that): try the next gateway.
                log.info("connection failed (%s); retrying in %.1fs", exc, backoff)
                self.live.detach()  # says "disconnected" to whoever watches
                if len(self.api.gateways) > 1:
                    log.info("trying gateway %s next", self.api.next_gateway())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._stop.wait()
            backoff = reconnect_wait(backoff, region_answered=owner is not None)

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
        sender) and mark them read locally. Returns the receipts' server ids.

        The server leaves out messages it has no record of delivering to this account
        (older than 7 days); a batch of nothing but those is answered 404 and skipped."""
        receipts = []
        for start in range(0, len(server_ids), RECEIPT_BATCH):
            batch = server_ids[start : start + RECEIPT_BATCH]
            body = {"to": conversation_user, "kind": "read", "message_ids": batch}
            try:
                answer = await self.ws_request("receipt", body)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                continue
            receipts.append(str(answer["server_id"]))
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
