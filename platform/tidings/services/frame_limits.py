"""Per-device budgets for the socket frames a client can repeat at will (``receipt``,
``typing``), and the batch take that sends share.

A socket's queued frames are handled in batches; the budget is taken for every frame of a
kind in the batch at once, before any validation or store work. A flooding socket thus
costs one limiter call per batch (two once its bucket is empty), and the frames past its
budget are answered ``429`` without touching a store: its flood stays its own problem.
Buckets are per device, not per connection, so reconnecting does not refill them.
"""

from __future__ import annotations

from collections.abc import Sequence

from tidings.core import wsproto
from tidings.core.limits import RateLimits
from tidings.core.ratelimit import Decision, Limit
from tidings.errors import RateLimited, TidingsError
from tidings.services.context import Context, Principal

REFUSED_PER_S = 50.0
"""Frames refused for a rate limit that one socket may have its gateway answer per
second; past this pace, reading that socket pauses (``ReadPacer``)."""
MAX_PAUSE_S = 5.0
"""The longest a socket's reading is paused ahead. A socket reads up to a few hundred
frames between two looks at its pause (what its queue holds), so a shorter bound would
forgive most of a flood; keepalive pongs wait meanwhile, far within their 60 s."""


class ReadPacer:
    """How long to leave a flooding socket unread, the way an XMPP server's traffic
    shaper paces a client past its rate.

    Each frame answered ``429`` buys the socket ``1 / REFUSED_PER_S`` seconds without
    reading, at most ``MAX_PAUSE_S`` ahead. Refused frames cost little each, but at a
    thousand a second one socket took a third of its gateway's loop and every other
    socket's answers waited behind it. Paused, its client's TCP window closes and the
    flood waits in its own buffers; a client within its limits is never paused, and a
    paused one loses nothing (its frames are read later, in order)."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = 0.0

    def refused(self, now: float, count: int = 1) -> None:
        self.until = min(max(self.until, now) + count / REFUSED_PER_S, now + MAX_PAUSE_S)

    def pause(self, now: float) -> float:
        """Seconds to wait before reading the next frame."""
        return max(0.0, self.until - now)


def frame_limit(rates: RateLimits, kind: str) -> Limit | None:
    """The bucket of a request type, or None for types without one of their own
    (sends are limited by the router, per batch too)."""
    if kind == "receipt":
        return Limit(rates.receipt_rate, rates.receipt_burst)
    if kind == "typing":
        return Limit(rates.typing_rate, rates.typing_burst)
    return None


async def take_up_to(
    ctx: Context, name: str, key: str, limit: Limit, count: int
) -> tuple[int, RateLimited | None]:
    """How many of ``count`` requests the ``name`` bucket of ``key`` allows, and the
    refusal for the rest: one take for them all when the bucket holds enough."""
    if count > 1 and (await ctx.take(name, key, limit, cost=count)).allowed:
        return count, None
    for allowed in range(count):
        decision = await ctx.take(name, key, limit)
        if not decision.allowed:
            return allowed, ctx.refusal(name, decision, count - allowed)
    return count, None


class FrameBudgets:
    """One socket's view of its device's buckets.

    Once a bucket refused, no token can come back before its ``retry_after`` (tokens
    only refill with time; every other taker only takes), so until then the socket
    refuses that kind by itself: a flood past its budget costs no limiter round trip
    at all, which on Redis would be one per batch."""

    def __init__(self, ctx: Context, principal: Principal) -> None:
        self.ctx, self.principal = ctx, principal
        self.key = f"{principal.user_id}:{principal.device_id}"
        self._empty_until: dict[str, float] = {}

    def note(self, kind: str, refusal: RateLimited) -> None:
        """The ``kind`` bucket refused: it holds no token for ``refusal.retry_after``."""
        self._empty_until[kind] = self.ctx.clock() + refusal.retry_after

    def empty(self, kind: str, count: int) -> RateLimited | None:
        """The refusal for ``count`` requests of ``kind`` while its bucket is known
        empty, else None."""
        until = self._empty_until.get(kind)
        if until is None:
            return None
        now = self.ctx.clock()
        if now >= until:
            del self._empty_until[kind]
            return None
        return self.ctx.refusal(kind, Decision(False, until - now), count)

    async def over_budget(self, requests: Sequence[wsproto.Request]) -> dict[int, TidingsError]:
        """The requests of a batch (by index) that their kind's budget refuses: of each
        limited kind, the ones past what its bucket holds, in read order. A limiter
        that cannot answer refuses them all with its (retryable) error; the socket
        stays."""
        ctx = self.ctx
        by_kind: dict[str, tuple[Limit, list[int]]] = {}
        for index, request in enumerate(requests):
            if request.type in by_kind:
                by_kind[request.type][1].append(index)
            elif (limit := frame_limit(ctx.rates, request.type)) is not None:
                by_kind[request.type] = (limit, [index])
        refused: dict[int, TidingsError] = {}
        for kind, (limit, indexes) in by_kind.items():
            refusal: TidingsError | None = self.empty(kind, len(indexes))
            allowed = 0
            if refusal is None:
                try:
                    allowed, refusal = await take_up_to(ctx, kind, self.key, limit, len(indexes))
                except TidingsError as exc:
                    allowed, refusal = 0, exc
                if isinstance(refusal, RateLimited):
                    self.note(kind, refusal)
            if refusal is not None:
                refused.update((index, refusal) for index in indexes[allowed:])
        return refused
