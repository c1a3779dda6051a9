"""The router: membership, device-list check, dedupe, fan-out, produce.

A sender hears ``accepted`` only after the bus took every per-device envelope, so an
accepted message survives any crash after that point.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tidings.core import ids, jsoncodec
from tidings.core.envelopes import Envelope, EnvelopeKind, ReceiptKind
from tidings.core.fanout import (
    DeviceMap,
    check_device_list,
    fan_out,
    fan_out_same,
    required_devices,
)
from tidings.core.model import Device
from tidings.core.ratelimit import Limit
from tidings.core.relationships import conversation_records
from tidings.errors import (
    IdReused,
    InvalidInput,
    MismatchedDevices,
    NotFound,
    RateLimited,
    StaleDevices,
    TidingsError,
)
from tidings.services.context import Context, Principal, produce_routed, produce_routed_each
from tidings.services.delivered_receipts import DeliveredReceipts
from tidings.services.directory import Directory
from tidings.services.frame_limits import take_up_to
from tidings.services.relationships import Relationships


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
    def __init__(self, ctx: Context, directory: Directory) -> None:
        self.ctx, self.directory = ctx, directory
        self.relationships = Relationships(ctx)
        self.receipts = DeliveredReceipts(
            self.delivered_many, ctx.limits.receipt_hold_s, ctx.metrics.receipts_dropped.inc
        )
        """``delivered`` receipts of the acks this gateway records, held a moment."""

    async def _recipients(
        self, principal: Principal, to_user: str | None, to_group: str | None
    ) -> list[str]:
        ctx = self.ctx
        if to_group is not None:
            group = await ctx.groups.get_group(to_group)
            if group is None or not group.is_member(principal.user_id):
                raise NotFound(f"group {to_group} not found, or you are not a member")
            return sorted(group.members)
        assert to_user is not None
        if not await self.directory.exists(to_user):
            raise NotFound(f"user {to_user} does not exist")
        return sorted({to_user, principal.user_id})

    async def send(self, principal: Principal, out: Outgoing) -> Accepted:
        (result,) = await self.send_many(principal, [out])
        if isinstance(result, TidingsError):
            raise result
        return result

    async def send_many(
        self, principal: Principal, outs: Sequence[Outgoing]
    ) -> list[Accepted | TidingsError]:
        """Accept a socket's queued sends together, answering each on its own.

        The batch costs one rate-limit take, one device lookup, one dedupe round and
        one produce, however many sends it holds; envelopes reach the bus in the order
        of ``outs``, so order per conversation is kept. A send that fails a check gets
        its own error and the others go on; a bus failure fails every send it held.
        """
        ctx = self.ctx
        ctx.metrics.send_batch_size.observe(len(outs))
        trace = ctx.tracing.sends(outs)  # None when none is sampled
        results: list[Accepted | TidingsError | None] = [None] * len(outs)
        allowed, refusal = await self._take_sends(principal, len(outs))
        for index in range(allowed, len(outs)):
            results[index] = refusal
        pending = await self._check_devices(
            principal, [(i, outs[i]) for i in range(allowed)], results
        )
        if not pending:
            if trace is not None:
                trace.answered(outs, results)
            return _answers(results)

        # Deduplicate by the server id the client id maps to; a repeat within this batch
        # is answered with the first one's outcome.
        firsts: dict[str, tuple[int, str]] = {}
        fresh: list[tuple[int, Outgoing, DeviceMap, str, str]] = []
        repeats: list[tuple[int, int]] = []
        for index, out, required in pending:
            server_id = ids.server_id(principal.user_id, principal.device_id, out.client_id)
            to = f"group:{out.to_group}" if out.to_group else f"user:{out.to_user}"
            if server_id in firsts:
                first, first_to = firsts[server_id]
                if first_to == to:
                    repeats.append((index, first))
                else:
                    results[index] = _id_reused(ctx, out)
                continue
            firsts[server_id] = (index, to)
            fresh.append((index, out, required, server_id, to))
        now = ctx.now_ms()
        held = await ctx.keys.put_many_if_absent(
            [
                (f"dedupe:{sid}", _dedupe_state(now, False, to), ctx.limits.dedupe_ttl_s)
                for _, _, _, sid, to in fresh
            ]
        )
        envelopes: list[Envelope] = []
        produced: list[tuple[int, Outgoing, str, str, int, int]] = []
        for (index, out, required, server_id, to), existing in zip(fresh, held, strict=True):
            state: dict[str, Any] = (
                jsoncodec.loads(existing) if existing is not None else {"ts": now, "to": to}
            )
            ts = int(state["ts"])
            if state.get("to", to) != to:
                results[index] = _id_reused(ctx, out)
                continue
            if state.get("produced"):
                ctx.metrics.sends_deduplicated.inc()
                results[index] = Accepted(server_id, ts, duplicate=True)
                continue
            start = len(envelopes)
            envelopes += _envelopes(principal, out, required, server_id, ts)
            produced.append((index, out, server_id, to, ts, len(envelopes) - start))
        if envelopes:
            # Per topic: a region that cannot be reached fails only the sends with a
            # copy routed to it; the others are accepted.
            errors = await produce_routed_each(
                ctx, envelopes if trace is None else trace.stamp(envelopes)
            )
            kept, start = [], 0
            for entry in produced:
                count = entry[5]
                failed = next((e for e in errors[start : start + count] if e is not None), None)
                start += count
                if failed is None:
                    kept.append(entry)
                else:
                    results[entry[0]] = failed
            produced = kept
            if trace is not None:
                trace.produced(out.client_id for _, out, *_ in produced)
        if produced:
            # Direct messages open (or refresh) a conversation, which typing needs; its
            # records go in the same round trip as the dedupe state.
            talked_to = [out.to_user for _, out, *_ in produced if out.to_user is not None]
            await ctx.keys.set_many(
                [
                    (f"dedupe:{sid}", _dedupe_state(ts, True, to), ctx.limits.dedupe_ttl_s)
                    for _, _, sid, to, ts, _ in produced
                ]
                + conversation_records(principal.user_id, talked_to)
            )
        for index, out, server_id, _, ts, count in produced:
            kind = "group" if out.to_group else "direct"
            ctx.metrics.messages_accepted.labels(kind).inc()
            ctx.emit("accepted", kind, count=count, size=_ciphertext_size(out, count))
            results[index] = Accepted(server_id, ts, duplicate=False)
        for index, first in repeats:
            earlier = results[first]
            results[index] = (
                Accepted(earlier.server_id, earlier.timestamp, duplicate=True)
                if isinstance(earlier, Accepted)
                else earlier
            )
        if trace is not None:
            trace.answered(outs, results)
        return _answers(results)

    async def _take_sends(self, principal: Principal, count: int) -> tuple[int, RateLimited | None]:
        """How many of ``count`` sends the device's send bucket allows, and the refusal
        for the rest: one take for the whole batch when the bucket holds enough."""
        rates = self.ctx.rates
        key = f"{principal.user_id}:{principal.device_id}"
        return await take_up_to(
            self.ctx, "send", key, Limit(rates.send_rate, rates.send_burst), count
        )

    async def _check_devices(
        self,
        principal: Principal,
        pending: list[tuple[int, Outgoing]],
        results: list[Accepted | TidingsError | None],
    ) -> list[tuple[int, Outgoing, DeviceMap]]:
        """Resolve each send's recipients and check its device list; the failures get
        their error in ``results`` and the sends that pass are returned."""
        recipients: dict[int, list[str]] = {}
        resolved: dict[tuple[str | None, str | None], list[str] | TidingsError] = {}
        for index, out in pending:
            target = (out.to_user, out.to_group)
            if target not in resolved:
                try:
                    resolved[target] = await self._recipients(principal, *target)
                except NotFound as exc:
                    resolved[target] = exc
            found = resolved[target]
            if isinstance(found, TidingsError):
                results[index] = found
            else:
                recipients[index] = found
        everyone = sorted({u for users in recipients.values() for u in users})
        devices = await self.directory.devices_of(everyone) if everyone else []
        by_user: dict[str, list[Device]] = defaultdict(list)
        for device in devices:
            by_user[device.user_id].append(device)
        passed: list[tuple[int, Outgoing, DeviceMap]] = []
        for index, out in pending:
            if index not in recipients:
                continue
            required = required_devices(
                (d for u in recipients[index] for d in by_user.get(u, ())),
                principal.user_id,
                principal.device_id,
            )
            try:
                self._check(out, required)
            except TidingsError as exc:
                results[index] = exc
                continue
            passed.append((index, out, required))
        return passed

    def _check(self, out: Outgoing, required: DeviceMap) -> None:
        ctx = self.ctx
        if out.group_body is not None:
            if out.to_group is None:
                raise InvalidInput("a single group body is only allowed for group sends")
            return
        supplied = {u: {d: reg for d, (reg, _) in ds.items()} for u, ds in out.ciphertexts.items()}
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

    async def produce(self, envelopes: Sequence[Envelope]) -> None:
        await produce_routed(self.ctx, envelopes)

    async def _all_devices(
        self, user_ids: Sequence[str], skip: Principal | None = None
    ) -> dict[str, list[int]]:
        """Every device of ``user_ids``, but ``skip`` (the device sending)."""
        devices = await self.directory.devices_of(list(user_ids))
        skipped = (skip.user_id, skip.device_id) if skip is not None else ("", 0)
        return {u: list(ds) for u, ds in required_devices(devices, *skipped).items()}

    async def receipt(
        self, principal: Principal, kind: ReceiptKind, to_user: str, message_ids: Sequence[str]
    ) -> tuple[str, list[str]]:
        """Tell every device of ``to_user`` (the original sender) that messages were seen.

        Only messages ``to_user`` sent the reader count; the others are left out and
        returned (with the receipt's server id), and a receipt with none left is refused
        (``NotFound``): a stranger cannot put anything in anyone's queue."""
        check = await self.relationships.readable(principal, to_user, message_ids)
        template = self._receipt(principal, kind, check.known)
        devices = await self._all_devices([to_user], principal)
        await self.produce(fan_out_same(template, devices))
        return template.server_id, list(check.dropped)

    def _receipt(
        self, principal: Principal, kind: ReceiptKind, message_ids: Sequence[str]
    ) -> Envelope:
        joined = ",".join(sorted(message_ids))
        return Envelope(
            server_id=ids.receipt_id(kind.value, principal.user_id, principal.device_id, joined),
            kind=EnvelopeKind.RECEIPT,
            timestamp=self.ctx.now_ms(),
            sender_user=principal.user_id,
            sender_device=principal.device_id,
            recipient_user="",
            recipient_device=0,
            receipt_kind=kind,
            message_ids=tuple(sorted(message_ids)),
        )

    async def delivered_many(self, held: Sequence[tuple[Principal, list[Envelope]]]) -> None:
        """Server-generated ``delivered`` receipts for the messages each reader acked, one
        per reader and original sender, for every reader at once: one device lookup,
        one produce."""
        wanted: list[tuple[Principal, dict[str, list[str]]]] = []
        senders: set[str] = set()
        for principal, acked in held:
            by_sender: dict[str, list[str]] = defaultdict(list)
            for envelope in acked:
                if (
                    envelope.kind is EnvelopeKind.MESSAGE
                    and envelope.sender_user != principal.user_id
                ):
                    by_sender[envelope.sender_user].append(envelope.server_id)
            if by_sender:
                wanted.append((principal, by_sender))
                senders.update(by_sender)
        if not wanted:
            return
        # Senders are never their readers' own account, so no reader device is skipped.
        required = await self._all_devices(sorted(senders))
        envelopes: list[Envelope] = []
        step = self.ctx.limits.receipt_batch
        for principal, by_sender in wanted:
            for sender, message_ids in by_sender.items():
                for start in range(0, len(message_ids), step):
                    template = self._receipt(
                        principal, ReceiptKind.DELIVERED, message_ids[start : start + step]
                    )
                    envelopes += fan_out_same(template, {sender: required.get(sender, [])})
        await self.produce(envelopes)

    async def typing(
        self, principal: Principal, to_user: str | None, to_group: str | None, state: str
    ) -> None:
        """Ephemeral: reaches online devices only, never stored. Only to users the typist
        talks with (``Relationships.check_typing``) and groups they are a member of."""
        if to_user is not None:
            await self.relationships.check_typing(principal, to_user)
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


def _id_reused(ctx: Context, out: Outgoing) -> IdReused:
    # A retry must repeat its message; a new message needs a new id. Answering
    # "duplicate" here would silently drop the second message.
    ctx.metrics.sends_rejected.labels(IdReused.code).inc()
    return IdReused(
        f"message id {out.client_id} was already used for another recipient; "
        "give every new message a new id"
    )


def _dedupe_state(ts: int, produced: bool, to: str) -> bytes:
    return jsoncodec.dumps({"ts": ts, "produced": produced, "to": to})


def _envelopes(
    principal: Principal, out: Outgoing, required: DeviceMap, server_id: str, ts: int
) -> list[Envelope]:
    template = Envelope(
        server_id=server_id,
        kind=EnvelopeKind.MESSAGE,
        timestamp=ts,
        sender_user=principal.user_id,
        sender_device=principal.device_id,
        recipient_user="",
        recipient_device=0,
        client_id=out.client_id,
        group_id=out.to_group,
    )
    if out.group_body is not None:
        return fan_out_same(replace(template, body=out.group_body), required)
    bodies = {u: {d: body for d, (_, body) in ds.items()} for u, ds in out.ciphertexts.items()}
    return fan_out(template, bodies)


def _ciphertext_size(out: Outgoing, copies: int) -> int:
    if out.group_body is not None:
        return len(out.group_body) * copies
    return sum(len(body) for ds in out.ciphertexts.values() for _, body in ds.values())


def _answers(results: list[Accepted | TidingsError | None]) -> list[Accepted | TidingsError]:
    missing = [i for i, r in enumerate(results) if r is None]
    assert not missing, f"sends {missing} got no answer"
    return [r for r in results if r is not None]
