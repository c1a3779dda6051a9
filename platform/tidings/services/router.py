"""The router: membership, device-list check, dedupe, fan-out, produce.

A sender hears ``accepted`` only after the bus took every per-device envelope, so an
accepted message survives any crash after that point.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tidings.core import ids
from tidings.core.envelopes import Envelope, EnvelopeKind, ReceiptKind
from tidings.core.fanout import check_device_list, fan_out, fan_out_same, required_devices
from tidings.core.model import InboxItem
from tidings.core.ratelimit import Limit
from tidings.errors import IdReused, InvalidInput, MismatchedDevices, NotFound, StaleDevices
from tidings.services.context import Context, Principal, produce_routed


@dataclass(frozen=True)
class Outgoing:
    """A validated send: either per-device ciphertexts or one sender-key body for a group."""

    client_id: str
    to_user: str | None
    to_group: str | None
    ciphertexts: dict[str, dict[int, tuple[int | None, str]]]
    """user -> device -> (registration id or None, base64 ciphertext)"""
    group_body: str | None = None


@dataclass(frozen=True)
class Accepted:
    server_id: str
    timestamp: int
    duplicate: bool


class Router:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _recipients(
        self, principal: Principal, to_user: str | None, to_group: str | None
    ) -> list[str]:
        ctx = self.ctx
        if to_group is not None:
            group = await ctx.users.get_group(to_group)
            if group is None or not group.is_member(principal.user_id):
                raise NotFound(f"group {to_group} not found, or you are not a member")
            return sorted(group.members)
        assert to_user is not None
        if await ctx.users.get_user(to_user) is None:
            raise NotFound(f"user {to_user} does not exist")
        return sorted({to_user, principal.user_id})

    async def send(self, principal: Principal, out: Outgoing) -> Accepted:
        ctx = self.ctx
        rates = ctx.rates
        await ctx.limit(
            "send",
            f"{principal.user_id}:{principal.device_id}",
            Limit(rates.send_rate, rates.send_burst),
        )
        recipients = await self._recipients(principal, out.to_user, out.to_group)
        devices = await ctx.users.devices_of(recipients)
        required = required_devices(devices, principal.user_id, principal.device_id)
        if out.group_body is None:
            supplied = {
                u: {d: reg for d, (reg, _) in ds.items()} for u, ds in out.ciphertexts.items()
            }
            check = check_device_list(required, supplied)
            if check.mismatched:
                ctx.metrics.sends_rejected.labels(MismatchedDevices.code).inc()
                raise MismatchedDevices(
                    "the device list is out of date: encrypt for the missing devices, drop the "
                    "extra ones, and send again",
                    details={"missing": check.missing, "extra": check.extra},
                )
            if check.stale:
                ctx.metrics.sends_rejected.labels(StaleDevices.code).inc()
                raise StaleDevices(
                    "these devices were re-registered: fetch their new bundles and send again",
                    details={"stale": check.stale},
                )
        elif out.to_group is None:
            raise InvalidInput("a single group body is only allowed for group sends")

        server_id = ids.server_id(principal.user_id, principal.device_id, out.client_id)
        dedupe_key = f"dedupe:{server_id}"
        to = f"group:{out.to_group}" if out.to_group else f"user:{out.to_user}"
        first = json.dumps({"ts": ctx.now_ms(), "produced": False, "to": to}).encode()
        held = await ctx.presence.put_if_absent(dedupe_key, first, ctx.limits.dedupe_ttl_s)
        state = json.loads(held or first)
        if state.get("to", to) != to:
            # A retry must repeat its message; a new message needs a new id. Answering
            # "duplicate" here would silently drop the second message.
            ctx.metrics.sends_rejected.labels(IdReused.code).inc()
            raise IdReused(
                f"message id {out.client_id} was already used for another recipient; "
                "give every new message a new id"
            )
        if state["produced"]:
            ctx.metrics.sends_deduplicated.inc()
            return Accepted(server_id, int(state["ts"]), duplicate=True)

        template = Envelope(
            server_id=server_id,
            kind=EnvelopeKind.MESSAGE,
            timestamp=int(state["ts"]),
            sender_user=principal.user_id,
            sender_device=principal.device_id,
            recipient_user="",
            recipient_device=0,
            client_id=out.client_id,
            group_id=out.to_group,
        )
        if out.group_body is not None:
            envelopes = fan_out_same(replace(template, body=out.group_body), required)
        else:
            bodies = {
                u: {d: body for d, (_, body) in ds.items()} for u, ds in out.ciphertexts.items()
            }
            envelopes = fan_out(template, bodies)
        await self.produce(envelopes)
        await ctx.presence.set(
            dedupe_key,
            json.dumps({"ts": state["ts"], "produced": True, "to": to}).encode(),
            ctx.limits.dedupe_ttl_s,
        )
        kind = "group" if out.to_group else "direct"
        ctx.metrics.messages_accepted.labels(kind).inc()
        ctx.emit(
            "accepted", kind, count=len(envelopes), size=sum(len(e.body or "") for e in envelopes)
        )
        return Accepted(server_id, int(state["ts"]), duplicate=False)

    async def produce(self, envelopes: Sequence[Envelope]) -> None:
        await produce_routed(self.ctx, envelopes)

    async def _all_devices(self, user_ids: Sequence[str], skip: Principal) -> dict[str, list[int]]:
        devices = await self.ctx.users.devices_of(list(user_ids))
        return {
            u: list(ds) for u, ds in required_devices(devices, skip.user_id, skip.device_id).items()
        }

    async def receipt(
        self, principal: Principal, kind: ReceiptKind, to_user: str, message_ids: Sequence[str]
    ) -> str:
        """Tell every device of ``to_user`` (the original sender) that messages were seen."""
        if await self.ctx.users.get_user(to_user) is None:
            raise NotFound(f"user {to_user} does not exist")
        joined = ",".join(sorted(message_ids))
        server_id = ids.receipt_id(kind.value, principal.user_id, principal.device_id, joined)
        template = Envelope(
            server_id=server_id,
            kind=EnvelopeKind.RECEIPT,
            timestamp=self.ctx.now_ms(),
            sender_user=principal.user_id,
            sender_device=principal.device_id,
            recipient_user="",
            recipient_device=0,
            receipt_kind=kind,
            message_ids=tuple(sorted(message_ids)),
        )
        devices = await self._all_devices([to_user], principal)
        await self.produce(fan_out_same(template, devices))
        return server_id

    async def delivered(self, principal: Principal, acked: Sequence[InboxItem]) -> None:
        """Server-generated ``delivered`` receipts for acked messages, per original sender."""
        by_sender: dict[str, list[str]] = defaultdict(list)
        for item in acked:
            envelope = Envelope.decode(item.envelope)
            if envelope.kind is EnvelopeKind.MESSAGE and envelope.sender_user != principal.user_id:
                by_sender[envelope.sender_user].append(envelope.server_id)
        for sender, message_ids in by_sender.items():
            await self.receipt(principal, ReceiptKind.DELIVERED, sender, message_ids)

    async def typing(
        self, principal: Principal, to_user: str | None, to_group: str | None, state: str
    ) -> None:
        """Ephemeral: reaches online devices only, never stored."""
        recipients = await self._recipients(principal, to_user, to_group)
        template = Envelope(
            server_id=ids.server_id(
                principal.user_id, principal.device_id, f"typing-{self.ctx.now_ms()}"
            ),
            kind=EnvelopeKind.TYPING,
            timestamp=self.ctx.now_ms(),
            sender_user=principal.user_id,
            sender_device=principal.device_id,
            recipient_user="",
            recipient_device=0,
            group_id=to_group,
            typing=state,
            ephemeral=True,
        )
        devices = await self._all_devices(recipients, principal)
        await self.produce(fan_out_same(template, devices))
