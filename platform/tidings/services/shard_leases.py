"""The lease keeper of a delivery process: holds the leases of the shards its map gives
this region, and tells the delivery worker, per shard, whether it may store now.

Decisions are ``core.leases``; this runs them against the ``ShardLeases`` port every
``renew_s`` and, for a shard a batch needs and does not hold, at once. Each delivery
process keeps its own book: the region's processes renew the same (owner, epoch) row,
and a process that cannot reach a majority trusts nothing beyond its last renewal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

from tidings.aio import wait_event
from tidings.core.envelopes import Envelope
from tidings.core.leases import (
    Holding,
    LeaseRow,
    LeaseTerms,
    Verdict,
    Waiting,
    held,
    plan,
    release,
    verdict,
)
from tidings.core.shardmap import ShardMap
from tidings.errors import TidingsError, Unavailable
from tidings.ports import ShardLeases
from tidings.services.context import Context

log = logging.getLogger("tidings.leases")


@dataclass(frozen=True)
class Sorted:
    """A batch's envelopes by what this process may do with them now."""

    store: list[Envelope]
    forward: list[Envelope]
    """Envelopes of shards another region holds at this map's epoch or later."""
    holders: dict[str, LeaseRow]
    """Those shards' leases, by shard name: where ``forward`` goes."""

    def forwarding_map(self, shard_map: ShardMap) -> ShardMap:
        """``shard_map`` with each forwarded shard owned by its lease holder at the
        holder's epoch (what the forwarded records are stamped with)."""
        return replace(
            shard_map,
            shards=tuple(
                replace(s, owner_region=row.owner, epoch=row.epoch)
                if (row := self.holders.get(s.name))
                else s
                for s in shard_map.shards
            ),
        )


class LeaseKeeper:
    def __init__(
        self,
        ctx: Context,
        leases: ShardLeases,
        terms: LeaseTerms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx, self.leases, self.terms, self.monotonic = ctx, leases, terms, monotonic
        self.book: dict[str, Holding] = {}
        self._lock = asyncio.Lock()
        self._waiting: dict[str, str] = {}  # shard -> the reason last logged

    def claims(self) -> dict[str, int]:
        """Shard -> epoch, for the shards the map gives this region. Epoch 0 is a slot
        range no published shard covers: this region serves it alone, unleased."""
        here = self.ctx.region
        return {
            s.name: s.epoch
            for s in self.ctx.shard_map.shards
            if s.owner_region == here and s.epoch > 0
        }

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            await self.refresh()
            if await wait_event(stop, self.terms.renew_s):
                return

    async def refresh(self, only: Collection[str] | None = None) -> None:
        """Renew, take or create the leases of the claimed shards (``only`` some), and
        release those the map no longer claims."""
        async with self._lock:
            claims = self.claims()
            for shard, epoch in claims.items():
                if only is None or shard in only:
                    await self._claim(shard, epoch)
            if only is None:
                for shard in [s for s in self.book if s not in claims]:
                    await self._release(self.book.pop(shard))
            now = self.monotonic()
            self.ctx.metrics.shard_leases_held.set(
                sum(h.trusted_until > now for h in self.book.values())
            )

    async def _claim(self, shard: str, epoch: int) -> None:
        here, terms = self.ctx.region, self.terms
        holding = self.book.get(shard)
        # Unless a write applies now, the last renewal still bounds what may be written.
        trusted = holding.trusted_until if holding is not None else 0.0
        try:
            row = holding.row if holding is not None else await self.leases.read(shard)
            for _ in range(2):  # once more when the row changed since it was last seen
                step = plan(row, here, shard, epoch, self._now_ms(), terms)
                if step is None or isinstance(step, Waiting):
                    self.book[shard] = Holding(row, trusted)
                    self._log_waiting(shard, step, row)
                    return
                sent_at = self.monotonic()
                applied, row = await self.leases.write(step)
                self._count(step.kind.value, "applied" if applied else "refused")
                if applied:
                    self.book[shard] = held(step, sent_at, terms)
                    self._waiting.pop(shard, None)
                    return
            self.book[shard] = Holding(row, trusted)
        except TidingsError as exc:
            # Nothing new is trusted: the last renewal still bounds what may be written.
            self._count("any", "failed")
            log.warning("shard %s: lease not renewed: %s", shard, exc.message)

    async def _release(self, holding: Holding) -> None:
        """The map moved the shard away: end this region's lease at once, so the new
        owner need not wait for it to run out (failing that, it runs out by itself)."""
        if holding.row is None or (op := release(holding.row, self.ctx.region)) is None:
            return
        try:
            applied, _ = await self.leases.write(op)
        except TidingsError as exc:
            self._count("release", "failed")
            log.warning("shard %s: lease not released: %s", op.shard, exc.message)
            return
        self._count("release", "applied" if applied else "refused")
        log.info("shard %s: lease released (the shard map moved it away)", op.shard)

    async def sort(self, envelopes: Sequence[Envelope]) -> Sorted:
        """Split envelopes this region's map delivers here by lease: store, forward to
        the holder, or (any shard neither) raise ``Unavailable`` so the batch waits and
        is handled again."""
        shard_map = self.ctx.shard_map
        shards = {id(e): shard_map.shard_for(e.recipient_user) for e in envelopes}
        needed = {s.name: s.epoch for s in shards.values() if s.epoch > 0}
        if not needed:
            return Sorted(list(envelopes), [], {})
        verdicts = self._verdicts(needed)
        if any(v is not Verdict.STORE for v in verdicts.values()):
            # Not held (or held too briefly for a write): ask now, not at the next tick.
            await self.refresh(only=[s for s, v in verdicts.items() if v is not Verdict.STORE])
            verdicts = self._verdicts(needed)
        blocked = sorted(s for s, v in verdicts.items() if v is Verdict.WAIT)
        if blocked:
            self.ctx.metrics.delivery_fenced.inc()
            reasons = "; ".join(self._waiting.get(s, f"shard {s}: no lease held") for s in blocked)
            raise Unavailable(f"no lease to store for {', '.join(blocked)}: {reasons}")
        store: list[Envelope] = []
        forward: list[Envelope] = []
        holders: dict[str, LeaseRow] = {}
        for e in envelopes:
            shard = shards[id(e)]
            if shard.epoch > 0 and verdicts[shard.name] is Verdict.FORWARD:
                row = self.book[shard.name].row
                assert row is not None  # FORWARD names a holder
                holders[shard.name] = row
                forward.append(e)
            else:
                store.append(e)
        return Sorted(store, forward, holders)

    def _verdicts(self, needed: dict[str, int]) -> dict[str, Verdict]:
        now, here = self.monotonic(), self.ctx.region
        return {
            shard: verdict(self.book.get(shard), here, epoch, now, self.terms)
            for shard, epoch in needed.items()
        }

    def _now_ms(self) -> int:
        return int(self.ctx.clock() * 1000)

    def _count(self, kind: str, result: str) -> None:
        self.ctx.metrics.shard_lease_writes.labels(kind, result).inc()

    def _log_waiting(self, shard: str, step: Waiting | None, row: LeaseRow | None) -> None:
        if step is None:
            assert row is not None  # plan says "lost" only over a row
            reason = (
                f"shard {shard}: {row.owner} holds it at epoch {row.epoch}; this region's "
                "records for it go there"
            )
        else:
            reason = step.reason
        if self._waiting.get(shard) != reason:
            self._waiting[shard] = reason
            log.warning("%s", reason)
