"""Shard leases (``core.leases``): the plans, the trust a renewal gives, and (hypothesis)
two regions whose clocks differ within the skew never have writes in flight at once,
whatever order their renewals, takes and partitions come in."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tidings.core.leases import (
    NEVER_MS,
    Holding,
    LeaseOp,
    LeaseRow,
    LeaseTerms,
    OpKind,
    Verdict,
    Waiting,
    held,
    plan,
    release,
    verdict,
)

TERMS = LeaseTerms(lease_s=15.0, renew_s=3.0, skew_s=2.0, grace_s=5.0)


def test_terms_must_leave_room_for_renewals_skew_and_a_write() -> None:
    with pytest.raises(ValueError, match="must outlast"):
        LeaseTerms(lease_s=10.0, renew_s=3.0, skew_s=2.0, grace_s=5.0)


def test_no_row_is_created_and_an_own_row_renewed_at_its_epoch() -> None:
    assert plan(None, "a", "s", 1, 100_000, TERMS) == LeaseOp(OpKind.CREATE, "s", "a", 1, 115_000)
    own = LeaseRow("s", "a", 3, 90_000)
    # Renewed at the row's epoch even when the map is behind it.
    assert plan(own, "a", "s", 2, 100_000, TERMS) == LeaseOp(
        OpKind.RENEW, "s", "a", 3, 115_000, expected_epoch=3
    )


def test_a_live_lease_of_another_region_is_waited_for_then_taken() -> None:
    theirs = LeaseRow("s", "b", 1, 100_000)
    waiting = plan(theirs, "a", "s", 2, 101_000, TERMS)
    assert isinstance(waiting, Waiting)
    assert "b holds its lease at epoch 1 for 1.0s more" in waiting.reason
    # Past until + skew by the taker's clock: taken, at the map's epoch.
    assert plan(theirs, "a", "s", 2, 102_001, TERMS) == LeaseOp(
        OpKind.TAKE, "s", "a", 2, 117_001, expected_epoch=1, lapsed_before_ms=100_001
    )


def test_a_row_at_the_maps_epoch_or_later_held_elsewhere_is_lost_here() -> None:
    for epoch in (2, 3):
        assert plan(LeaseRow("s", "b", epoch, 0), "a", "s", 2, 100_000, TERMS) is None


def test_an_own_older_lease_is_raised_to_the_maps_epoch_at_once() -> None:
    step = plan(LeaseRow("s", "a", 1, 999_999), "a", "s", 4, 100_000, TERMS)
    assert step == LeaseOp(
        OpKind.TAKE, "s", "a", 4, 115_000, expected_epoch=1, lapsed_before_ms=NEVER_MS
    )


def test_release_only_of_this_regions_row() -> None:
    assert release(LeaseRow("s", "a", 2, 5), "a") == LeaseOp(
        OpKind.RELEASE, "s", "a", 2, 0, expected_epoch=2
    )
    assert release(LeaseRow("s", "b", 2, 5), "a") is None


def test_trust_runs_from_the_renewals_start_less_the_skew_and_a_write_needs_grace() -> None:
    step = LeaseOp(OpKind.RENEW, "s", "a", 1, 115_000, expected_epoch=1)
    holding = held(step, sent_at=50.0, terms=TERMS)
    assert holding.trusted_until == 50.0 + 15.0 - 2.0
    assert verdict(holding, "a", 1, 50.0 + 13.0 - 5.0, TERMS) is Verdict.STORE
    assert verdict(holding, "a", 1, 50.0 + 13.0 - 4.9, TERMS) is Verdict.WAIT
    assert held(release(holding.row, "a"), 60.0, TERMS).trusted_until == 0.0  # type: ignore[arg-type]


def test_records_go_to_a_holder_only_at_the_maps_epoch_or_later() -> None:
    theirs = Holding(LeaseRow("s", "b", 2, 0))
    assert verdict(theirs, "a", 2, 0.0, TERMS) is Verdict.FORWARD
    # An older holder may be on its way out; its own map may send them back: wait.
    assert verdict(theirs, "a", 3, 0.0, TERMS) is Verdict.WAIT
    assert verdict(None, "a", 1, 0.0, TERMS) is Verdict.WAIT


# --- two regions, one lease row, clocks apart within the skew -------------------------


@dataclass
class Region:
    name: str
    epoch: int
    offset_s: float
    """Its wall clock minus true time (within the skew)."""
    rate: float = 1.0
    holding: Holding | None = None
    writes_until: float = 0.0
    """True time by which every write it started has landed."""
    cut_off: bool = False
    """Partitioned from the majority: its lease writes fail (unknown outcome)."""


@dataclass
class World:
    now: float = 1_000.0  # true time, seconds
    row: LeaseRow | None = None
    regions: list[Region] = field(default_factory=list)
    writes_lost: list[tuple[LeaseOp, float]] = field(default_factory=list)

    def wall_ms(self, r: Region) -> int:
        return int((self.now + r.offset_s) * 1000)

    def apply(self, op: LeaseOp) -> bool:
        """The store: the conditions of ``ShardLeases.write``, atomically."""
        row = self.row
        if op.kind is OpKind.CREATE:
            ok = row is None
        elif op.kind is OpKind.TAKE:
            ok = (
                row is not None
                and row.epoch == op.expected_epoch
                and row.until_ms < op.lapsed_before_ms
            )
        else:
            ok = row is not None and row.owner == op.owner and row.epoch == op.expected_epoch
        if ok:
            self.row = LeaseRow(op.shard, op.owner, op.epoch, op.until_ms)
        return ok

    def tick(self, r: Region) -> None:
        step = plan(
            self.row if not r.cut_off else (r.holding.row if r.holding else None),
            r.name,
            "s",
            r.epoch,
            self.wall_ms(r),
            TERMS,
        )
        if not isinstance(step, LeaseOp):
            return
        if r.cut_off:
            # The write may still reach the majority later (or never): its outcome is
            # unknown to the region, which trusts nothing new.
            self.writes_lost.append((step, self.now))
            return
        sent_at = self.now  # monotonic = true time (drift is within the skew here)
        if self.apply(step):
            r.holding = held(step, sent_at, TERMS)
        else:
            r.holding = Holding(self.row, r.holding.trusted_until if r.holding else 0.0)

    def write(self) -> None:
        """Each region that may store starts a write now; a write lands at any time
        within the grace. Two regions' writes must never be in flight together."""
        for r in self.regions:
            if verdict(r.holding, r.name, r.epoch, self.now, TERMS) is Verdict.STORE:
                for other in self.regions:
                    if other is not r:
                        assert other.writes_until <= self.now, (r.name, other.name, self.row)
                r.writes_until = self.now + TERMS.grace_s


steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(0, 1)),
        st.tuples(st.just("wait"), st.floats(0.1, 20.0)),
        st.tuples(st.just("wait"), st.floats(0.01, 1.0)),
        st.tuples(st.just("cut"), st.integers(0, 1)),
        st.tuples(st.just("heal"), st.integers(0, 1)),
        st.tuples(st.just("move"), st.integers(0, 1)),  # this region's map: it owns, newer
        st.just(("late",)),  # a lost write of the past reaches the majority now
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@example(  # a writes late in its lease; b, its clock 2 s ahead, takes the shard at once
    offsets=(-1.0, 1.0),
    actions=[("tick", 0), ("move", 1), ("wait", 11.9), ("tick", 1), ("wait", 3.2), ("tick", 1)],
)
@given(
    offsets=st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0)),
    actions=steps,
)
def test_two_regions_never_both_store(
    offsets: tuple[float, float], actions: list[tuple[object, ...]]
) -> None:
    world = World()
    world.regions = [Region("a", 1, offsets[0]), Region("b", 0, offsets[1])]
    epochs = 1
    for action in actions:
        kind = action[0]
        if kind == "tick":
            region = world.regions[int(action[1])]  # type: ignore[call-overload]
            if region.epoch:
                world.tick(region)
        elif kind == "wait":
            world.now += float(action[1])  # type: ignore[arg-type]
        elif kind in ("cut", "heal"):
            world.regions[int(action[1])].cut_off = kind == "cut"  # type: ignore[call-overload]
        elif kind == "move":
            epochs += 1
            # Only the mover's map hears of it: the other keeps its stale map.
            world.regions[int(action[1])].epoch = epochs  # type: ignore[call-overload]
        elif kind == "late" and world.writes_lost:
            # An unanswered write applied now: at most the lease it asked for, which its
            # sender does not trust; a taker must still see it run out.
            step, _ = world.writes_lost.pop(0)
            world.apply(step)
        world.write()
