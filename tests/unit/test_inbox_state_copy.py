"""The Cassandra inbox's copy of a device's state: where rows go, which days a reader
looks at, and how long a copy is used (pure; no Cassandra)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.engines.cassandra_inbox_state import (
    DAY_MS,
    RECENT_MS,
    REFRESH_MS,
    SKEW_MS,
    InboxState,
    InboxStates,
    position,
    recent_days,
)

NOON = 20_000 * DAY_MS + DAY_MS // 2


def test_a_row_goes_at_its_timestamp_after_every_earlier_row() -> None:
    assert position(NOON, NOON - 5, NOON) == NOON
    assert position(NOON - 5, NOON, NOON) == NOON + 1  # behind the last: right after it


def test_a_late_row_goes_to_a_recent_day_not_the_day_it_was_stamped() -> None:
    two_days_ago = NOON - 2 * DAY_MS
    assert position(two_days_ago, two_days_ago - 9, NOON) == NOON - RECENT_MS


def test_recent_days_are_one_at_noon_and_two_around_midnight() -> None:
    day = NOON // DAY_MS
    assert recent_days(NOON) == {day}
    assert recent_days(day * DAY_MS + 1000) == {day - 1, day}  # just after midnight
    assert recent_days((day + 1) * DAY_MS - 1000) == {day, day + 1}  # just before


@given(
    appended_at=st.integers(NOON - DAY_MS, NOON + DAY_MS),
    skew=st.integers(-SKEW_MS, SKEW_MS),
    stamped_before=st.integers(0, 3 * DAY_MS),
    last_before=st.integers(1, 3 * DAY_MS),
)
def test_a_reader_within_the_skew_looks_at_the_day_of_every_row_appended_now(
    appended_at: int, skew: int, stamped_before: int, last_before: int
) -> None:
    """However old its stamp, a row appended now goes to a day that every reader whose
    clock is within ``SKEW_MS`` of the appender's looks at."""
    pos = position(appended_at - stamped_before, appended_at - last_before, appended_at)
    assert pos // DAY_MS in recent_days(appended_at + skew)


def _state(days: list[int], watermark: tuple[int, str] | None = None) -> InboxState:
    rows = [{"day": d, "wm_pos": None, "wm_sid": None} for d in days] or [{}]
    if watermark is not None:
        rows[0] = {**rows[0], "wm_pos": watermark[0], "wm_sid": watermark[1]}
    return InboxState(rows, [], read_at=NOON)


def test_days_to_read_are_the_listed_ones_from_the_start_and_the_recent_ones() -> None:
    today = NOON // DAY_MS
    state = _state([today - 3, today - 1])
    assert state.days_from((-1, ""), NOON) == [today - 3, today - 1, today]
    assert state.days_from(((today - 2) * DAY_MS, "x"), NOON) == [today - 1, today]


def test_an_ack_moves_the_copy_on() -> None:
    today = NOON // DAY_MS
    state = _state([today - 1, today], watermark=((today - 1) * DAY_MS + 5, "a"))
    state.acked = {(NOON + 9, "z")}
    state.acked_now({(NOON, "b"), (NOON + 20, "c")}, (NOON + 9, "z"), keep_from=today)
    assert state.watermark == (NOON + 9, "z")
    assert state.acked == {(NOON + 20, "c")}  # what the watermark passed is forgotten
    assert state.days == {today}


def test_a_copy_is_used_until_it_is_stale_and_the_oldest_go_first() -> None:
    copies = InboxStates(limit=2)
    first = _state([])
    copies.keep(("u", 1), first)
    assert copies.fresh(("u", 1), NOON + REFRESH_MS - 1) is first
    assert copies.fresh(("u", 1), NOON + REFRESH_MS) is None
    assert copies.fresh(("u", 1), NOON - 1) is None  # a clock that went back: read again
    copies.keep(("v", 1), _state([]))
    copies.keep(("w", 1), _state([]))
    assert copies.fresh(("u", 1), NOON) is None  # the least recently used went
    assert copies.current(("w", 1), first) is False
    copies.forget(("w", 1))
    assert copies.fresh(("w", 1), NOON) is None
