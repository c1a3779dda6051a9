"""Analytics events: wire format, validation and daily folding."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tidings.core.analytics import (
    EVENTS,
    Event,
    EventBuffer,
    aggregate,
    decode_batch,
    encode_batch,
    summary,
)

DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

events = st.builds(
    Event,
    name=st.sampled_from(sorted(EVENTS)),
    kind=st.text(alphabet="abcdefgh:_", min_size=1, max_size=20),
    ts_ms=st.integers(min_value=0, max_value=4_000_000_000_000),
    count=st.integers(min_value=1, max_value=10_000),
    size=st.integers(min_value=0, max_value=10**9),
    latency_ms=st.none() | st.integers(min_value=0, max_value=10**7),
)


@given(st.lists(events, max_size=30))
def test_batches_round_trip(batch: list[Event]) -> None:
    assert decode_batch(encode_batch(batch)) == (batch, 0)


def test_malformed_events_are_skipped_and_counted() -> None:
    good = {"e": "accepted", "k": "direct", "t": T0, "n": 3, "b": 120}
    raw = [
        good,
        {"e": "hacked", "k": "direct", "t": T0},
        {"e": "stored", "k": "", "t": T0},
        {"e": "stored", "k": "direct", "t": -1},
        {"e": "stored", "k": "direct", "t": T0, "n": 0},
        {"e": "stored", "k": "direct", "t": T0, "l": "fast"},
        {"e": "stored", "k": "direct", "t": True},
        "not an object",
    ]
    found, skipped = decode_batch(json.dumps(raw).encode())
    assert found == [Event("accepted", "direct", T0, 3, 120)]
    assert skipped == 7
    assert decode_batch(b"{not json") == ([], 1)
    assert decode_batch(b'{"e": "accepted"}') == ([], 1)


def test_aggregate_counts_per_day_and_weighs_latency_by_count() -> None:
    folded = aggregate(
        [
            Event("accepted", "direct", T0 + 5, count=2, size=100),
            Event("accepted", "direct", T0 + 9, count=1, size=50),
            Event("stored", "direct", T0 + 10, count=2, latency_ms=30),
            Event("stored", "direct", T0 + 11, count=1, latency_ms=60),
            Event("accepted", "group", T0 + DAY_MS, count=4),
        ]
    )
    assert folded == {
        ("2026-01-01", "accepted.direct.count"): 3,
        ("2026-01-01", "accepted.direct.bytes"): 150,
        ("2026-01-01", "stored.direct.count"): 3,
        ("2026-01-01", "stored.direct.latency_ms_sum"): 120,
        ("2026-01-01", "stored.direct.latency_n"): 3,
        ("2026-01-02", "accepted.group.count"): 4,
    }
    day = {name: v for (d, name), v in folded.items() if d == "2026-01-01"}
    assert summary(day) == {
        "accepted.direct": {"count": 3, "bytes": 150},
        "stored.direct": {"count": 3, "latency_ms_mean": 40.0},
    }


def test_event_buffer_drops_oldest_when_full_and_requeues_in_front() -> None:
    buffer = EventBuffer(capacity=3)
    for n in range(5):
        buffer.emit(Event("accepted", "direct", T0 + n))
    assert buffer.dropped == 2
    first = buffer.drain(2)
    assert [e.ts_ms - T0 for e in first] == [2, 3]
    buffer.emit(Event("accepted", "direct", T0 + 5))
    buffer.requeue(first)  # room for one of the two: the newer survives
    assert [e.ts_ms - T0 for e in buffer.drain(10)] == [3, 4, 5]
    assert buffer.dropped == 3
    assert len(buffer) == 0
