"""Token-bucket maths."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.core.ratelimit import Bucket, Decision, Limit, idle_expiry, take


def test_burst_allowed_then_refused_with_retry_after() -> None:
    limit = Limit(rate=2.0, burst=3)
    bucket: Bucket | None = None
    for _ in range(3):
        decision, bucket = take(bucket, limit, now=100.0)
        assert decision == Decision(True, 0.0)
    decision, bucket = take(bucket, limit, now=100.0)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(0.5)  # one token at 2/s
    assert bucket.tokens == pytest.approx(0.0)


def test_refused_request_takes_nothing() -> None:
    limit = Limit(rate=1.0, burst=1)
    _, bucket = take(None, limit, now=0.0)
    decision, bucket = take(bucket, limit, now=0.25)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(0.75)
    assert bucket.tokens == pytest.approx(0.25)
    decision, _ = take(bucket, limit, now=1.0)
    assert decision.allowed


def test_refill_over_time() -> None:
    limit = Limit(rate=10.0, burst=5)
    bucket: Bucket | None = None
    for _ in range(5):
        _, bucket = take(bucket, limit, now=0.0)
    assert not take(bucket, limit, now=0.0)[0].allowed
    decision, bucket = take(bucket, limit, now=0.1)  # exactly one token back
    assert decision.allowed
    assert not take(bucket, limit, now=0.1)[0].allowed
    # a long pause refills to the burst and no further
    _, full = take(bucket, limit, now=1_000.0, cost=0.0)
    assert full.tokens == pytest.approx(5.0)


def test_cost_greater_than_one() -> None:
    limit = Limit(rate=1.0, burst=10)
    decision, bucket = take(None, limit, now=0.0, cost=7)
    assert decision.allowed
    assert bucket.tokens == pytest.approx(3.0)
    decision, bucket = take(bucket, limit, now=0.0, cost=5)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(2.0)
    decision, _ = take(bucket, limit, now=2.0, cost=5)
    assert decision.allowed


def test_cost_above_burst_is_never_allowed() -> None:
    limit = Limit(rate=1.0, burst=2)
    decision, _ = take(None, limit, now=0.0, cost=3)
    assert not decision.allowed


def test_clock_going_backwards_adds_no_tokens() -> None:
    limit = Limit(rate=1.0, burst=1)
    _, bucket = take(None, limit, now=100.0)
    decision, _ = take(bucket, limit, now=50.0)
    assert not decision.allowed


def test_zero_rate_retry_after_is_infinite() -> None:
    limit = Limit(rate=0.0, burst=1)
    _, bucket = take(None, limit, now=0.0)
    decision, _ = take(bucket, limit, now=10.0)
    assert not decision.allowed
    assert math.isinf(decision.retry_after)


def test_idle_expiry() -> None:
    assert idle_expiry(Limit(rate=2.0, burst=10)) == pytest.approx(5.0)
    assert idle_expiry(Limit(rate=0.0, burst=10)) == 86400.0


_limits = st.builds(
    Limit,
    rate=st.floats(min_value=0.01, max_value=100.0),
    burst=st.integers(min_value=1, max_value=50),
)
_gaps = st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=200)


@given(_limits, _gaps)
def test_allowed_never_exceeds_burst_plus_refill(limit: Limit, gaps: list[float]) -> None:
    bucket: Bucket | None = None
    now = start = 1_000.0
    allowed = 0
    for gap in gaps:
        now += gap
        decision, bucket = take(bucket, limit, now)
        allowed += decision.allowed
        assert allowed <= limit.burst + limit.rate * (now - start - gaps[0]) + 1e-6
        assert 0.0 <= bucket.tokens <= limit.burst


@given(_limits, _gaps)
def test_refusal_retry_after_is_accurate(limit: Limit, gaps: list[float]) -> None:
    bucket: Bucket | None = None
    now = 0.0
    for gap in gaps:
        now += gap
        decision, bucket = take(bucket, limit, now)
        if not decision.allowed:
            assert decision.retry_after > 0
            # waiting exactly retry_after is enough
            later, _ = take(bucket, limit, now + decision.retry_after + 1e-9)
            assert later.allowed
