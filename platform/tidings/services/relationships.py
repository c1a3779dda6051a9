"""Who may send receipts and typing signals to whom (the rules: ``core.relationships``).

The records ride on the message path's batches: received records are written by the
delivery worker with each batch it stores (``DeliveryWorker``: one write per batch, not
one per ack batch of every socket), conversation records with a send batch's dedupe
state. So checking costs one key-value read per receipt or typing frame, and the send
path only a few more keys in a round trip it makes anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from tidings.core import relationships as rules
from tidings.errors import Forbidden, NotFound
from tidings.services.context import Context, Principal


class Relationships:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def readable(
        self, principal: Principal, to_user: str, message_ids: Sequence[str]
    ) -> rules.ReceiptCheck:
        """The ids of a ``read`` receipt that ``to_user`` sent the reader; raises
        ``NotFound`` when there is none (nothing would be sent)."""
        keys = [rules.received_key(principal.user_id, to_user, m) for m in message_ids]
        check = rules.check_receipt(message_ids, await self.ctx.keys.get_many(keys))
        if check.dropped:
            self.ctx.metrics.receipt_ids_dropped.inc(len(check.dropped))
        if not check.known:
            raise NotFound(
                f"none of these messages was sent to you by {to_user} in the last "
                f"{rules.RECEIVED_TTL_S // 86400} days; nothing was sent",
                details={"dropped": list(check.dropped)},
            )
        return check

    async def check_typing(self, principal: Principal, to_user: str) -> None:
        """Raise ``Forbidden`` unless the typist and ``to_user`` exchanged a direct
        message lately or ``to_user`` has the typist in their contacts."""
        me = principal.user_id
        if to_user != me:
            if await self.ctx.keys.get(rules.conversation_key(me, to_user)) is not None:
                return
            if await self.ctx.contacts.has_contact(to_user, me):
                return
        self.ctx.metrics.typing_refused.inc()
        raise Forbidden(
            "typing goes only to users you exchanged a message with in the last "
            f"{rules.CONVERSATION_TTL_S // 86400} days, or who have you as a contact, "
            "and to groups you are a member of"
        )
