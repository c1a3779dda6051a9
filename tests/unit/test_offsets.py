"""In-order commits over out-of-order completion."""

from __future__ import annotations

from tidings.core.offsets import OffsetTracker


def test_nothing_is_ready_until_the_oldest_record_is_done() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for off in (10, 11, 12):
        assert t.add(0, off, f"r{off}")
    t.done(0, 12)
    t.done(0, 11)
    assert t.ready() == {}
    t.done(0, 10)
    assert t.ready() == {0: "r12"}
    assert t.ready() == {}
    assert t.in_flight == 0


def test_ready_stops_at_the_first_unfinished_record() -> None:
    t: OffsetTracker[int] = OffsetTracker()
    for off in range(5):
        t.add(0, off, off)
    t.done(0, 0)
    t.done(0, 1)
    t.done(0, 3)
    assert t.ready() == {0: 1}
    assert t.in_flight == 3
    t.done(0, 2)
    assert t.ready() == {0: 3}


def test_partitions_are_independent() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.add(0, 5, "a5")
    t.add(1, 7, "b7")
    t.add(1, 8, "b8")
    t.done(1, 7)
    t.done(1, 8)
    assert t.ready() == {1: "b8"}
    t.done(0, 5)
    assert t.ready() == {0: "a5"}


def test_a_record_already_in_flight_is_not_tracked_twice() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    assert t.add(0, 1, "x")
    assert not t.add(0, 1, "x")
    assert t.in_flight == 1


def test_done_for_an_unknown_record_is_ignored() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.done(3, 1)
    assert t.ready() == {}
