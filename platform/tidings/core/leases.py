"""Shard leases: the data layer's word on which region may store for a shard. Pure.

The shard map says which region *should* own a shard; maps are published per region and
a partitioned region may never read the newest. So a region's delivery workers store
and wake for a shard only while they hold its **lease**: a row per shard (owner, epoch,
until) written only by lightweight transactions at SERIAL consistency, that is by a
majority of all the datacenters' replicas. A region cut off from that majority cannot
renew, and stops storing before its lease runs out; another region can take the shard
only once the lease has run out, and only with a higher epoch than the one it replaces.
Two regions therefore never both store for one shard, whatever their maps say.

Clocks: ``until`` is the holder's wall clock at the renewal's start plus ``lease_s``.
The holder trusts its lease for ``lease_s - skew_s`` from the renewal's start on its own
monotonic clock; a taker waits until its wall clock is past ``until + skew_s``. So
clocks may differ by up to ``skew_s`` between regions without two holders. A write
started with less than ``grace_s`` of the lease left waits for the next renewal, so a
write in flight (bounded by the store's request timeout) lands while the lease holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class LeaseTerms:
    lease_s: float = 15.0
    """How long a renewal holds."""
    renew_s: float = 3.0
    """How often the holder renews (several renewals fit in one lease)."""
    skew_s: float = 2.0
    """The largest wall-clock difference between regions this tolerates."""
    grace_s: float = 5.0
    """Lease left that a write needs to start."""

    def __post_init__(self) -> None:
        if not 0 < self.renew_s < self.lease_s - self.skew_s - self.grace_s:
            raise ValueError(
                f"shard lease {self.lease_s}s must outlast a renewal interval "
                f"({self.renew_s}s) plus skew ({self.skew_s}s) plus write grace "
                f"({self.grace_s}s)"
            )


@dataclass(frozen=True)
class LeaseRow:
    """A shard's lease as stored."""

    shard: str
    owner: str
    epoch: int
    until_ms: int
    """The holder's wall clock (ms since the epoch) when the lease runs out."""


class OpKind(StrEnum):
    CREATE = "create"
    """No row yet: insert it, if still none exists."""
    RENEW = "renew"
    """This region holds it: extend, if owner and epoch are still these."""
    TAKE = "take"
    """Another (or an older) holder: replace it, if its epoch is still that one and
    its lease ran out (``lapsed_before_ms``)."""
    RELEASE = "release"
    """This region's map moved the shard away: end the lease now, if still ours."""


@dataclass(frozen=True)
class LeaseOp:
    kind: OpKind
    shard: str
    owner: str
    epoch: int
    until_ms: int
    expected_epoch: int = 0
    """TAKE, RENEW and RELEASE: the epoch the row must still have."""
    lapsed_before_ms: int = 0
    """TAKE: the row's ``until_ms`` must be below this (a lease held by this region
    itself is replaced at once: the bound is then the largest value)."""


NEVER_MS = 2**62
"""A bound no lease reaches: this region replacing its own lease."""


@dataclass(frozen=True)
class Waiting:
    """No write may be made: why, for the log and the retry."""

    reason: str


def plan(
    row: LeaseRow | None, here: str, shard: str, epoch: int, now_ms: int, terms: LeaseTerms
) -> LeaseOp | Waiting | None:
    """What this region does about ``shard``, which its map says it owns at ``epoch``.

    None: the row names another region at ``epoch`` or later (it lost the shard; the
    records go there). ``Waiting``: another holder's lease has not run out yet.
    """
    until = now_ms + int(terms.lease_s * 1000)
    if row is None:
        return LeaseOp(OpKind.CREATE, shard, here, epoch, until)
    if row.owner == here and row.epoch >= epoch:
        return LeaseOp(OpKind.RENEW, shard, here, row.epoch, until, expected_epoch=row.epoch)
    if row.epoch >= epoch:
        return None
    if row.owner == here:
        lapsed_before = NEVER_MS
    else:
        lapsed_before = now_ms - int(terms.skew_s * 1000)
        if row.until_ms >= lapsed_before:
            return Waiting(
                f"shard {shard}: {row.owner} holds its lease at epoch {row.epoch} for "
                f"{(row.until_ms - lapsed_before) / 1000:.1f}s more; this region's map "
                f"names it the owner at epoch {epoch}, which it takes once that lease "
                "runs out"
            )
    return LeaseOp(
        OpKind.TAKE,
        shard,
        here,
        epoch,
        until,
        expected_epoch=row.epoch,
        lapsed_before_ms=lapsed_before,
    )


def release(row: LeaseRow, here: str) -> LeaseOp | None:
    """Ending this region's lease on a shard its map no longer gives it (None when the
    row is not this region's)."""
    if row.owner != here:
        return None
    return LeaseOp(OpKind.RELEASE, row.shard, here, row.epoch, 0, expected_epoch=row.epoch)


@dataclass(frozen=True)
class Holding:
    """What this process knows of one shard's lease."""

    row: LeaseRow | None
    trusted_until: float = 0.0
    """Monotonic time up to which this process may write (0: not held)."""


def held(op: LeaseOp, sent_at: float, terms: LeaseTerms) -> Holding:
    """The holding after ``op`` (sent at monotonic ``sent_at``) was applied."""
    row = LeaseRow(op.shard, op.owner, op.epoch, op.until_ms)
    if op.kind is OpKind.RELEASE:
        return Holding(row)
    return Holding(row, sent_at + terms.lease_s - terms.skew_s)


class Verdict(StrEnum):
    STORE = "store"
    FORWARD = "forward"
    WAIT = "wait"


def verdict(
    holding: Holding | None, here: str, epoch: int, now: float, terms: LeaseTerms
) -> Verdict:
    """May this process write now (monotonic ``now``) for a shard its map gives it at
    ``epoch``? ``FORWARD``: another region holds it at that epoch or a later one (a move
    this region's map has not caught up with); the records go there. Never forward to
    an older holder: its own map may already send them back."""
    if holding is None:
        return Verdict.WAIT
    if holding.trusted_until - now >= terms.grace_s:
        return Verdict.STORE
    row = holding.row
    if row is not None and row.owner != here and row.epoch >= epoch:
        return Verdict.FORWARD
    return Verdict.WAIT
