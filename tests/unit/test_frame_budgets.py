"""A socket's frame budgets: once its device's bucket refused, the socket refuses that
kind by itself until a token can be back, without asking the limiter."""

from __future__ import annotations

from typing import Any, cast

import pytest

from tidings.core import wsproto
from tidings.core.ratelimit import Decision, Limit
from tidings.engines.embedded.presence import MemoryPresenceStore
from tidings.errors import RateLimited
from tidings.metrics import Metrics
from tidings.services.context import Context, Principal
from tidings.services.frame_limits import MAX_PAUSE_S, REFUSED_PER_S, FrameBudgets, ReadPacer


class CountingLimiter:
    def __init__(self, clock: Any) -> None:
        self.store = MemoryPresenceStore(clock)
        self.calls = 0

    async def take_token(self, key: str, limit: Limit, now: float, cost: float = 1.0) -> Decision:
        self.calls += 1
        return await self.store.take_token(key, limit, now, cost)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def typing(n: int) -> list[wsproto.Request]:
    return [wsproto.Request(f"t{i}", "typing", {}) for i in range(n)]


async def test_an_empty_bucket_is_refused_locally_until_a_token_can_be_back() -> None:
    clock = Clock()
    limiter = CountingLimiter(clock)
    nothing = cast(Any, None)
    ctx = Context(
        *(nothing,) * 4, buckets=limiter, keys=nothing, bus=nothing, blobs=nothing,
        aggregates=nothing, otp=nothing, clock=clock, metrics=Metrics.create(),
    )  # fmt: skip
    budgets = FrameBudgets(ctx, Principal("mallory", 1))

    assert await budgets.over_budget(typing(20)) == {}  # the burst, in one take
    assert limiter.calls == 1
    refused = await budgets.over_budget(typing(3))
    assert sorted(refused) == [0, 1, 2]
    assert limiter.calls == 3  # the batch take, then the first single take
    for _ in range(5):  # a flood: refused without a limiter call
        refused = await budgets.over_budget(typing(50))
        assert len(refused) == 50
    assert limiter.calls == 3
    error = refused[49]
    assert isinstance(error, RateLimited)
    assert error.retry_after == 0.5  # one typing signal every half second

    clock.now += 0.5
    refused = await budgets.over_budget(typing(2))
    assert sorted(refused) == [1]
    assert limiter.calls == 6  # batch take, single take that passed, single take refused
    assert await budgets.over_budget([wsproto.Request("p", "ping", {})]) == {}
    assert limiter.calls == 6  # other kinds have no budget here


def test_a_socket_refused_past_the_pace_goes_unread_for_a_while_bounded() -> None:
    pacer = ReadPacer()
    step = 1 / REFUSED_PER_S
    assert pacer.pause(100.0) == 0.0  # never refused: never paused
    pacer.refused(100.0)
    assert pacer.pause(100.0) == pytest.approx(step)
    pacer.refused(100.0, count=10)
    assert pacer.pause(100.0) == pytest.approx(11 * step)
    pacer.refused(100.0, count=100_000)  # a flood: paused at most MAX_PAUSE_S ahead
    assert pacer.pause(100.0) == pytest.approx(MAX_PAUSE_S)
    assert pacer.pause(100.0 + MAX_PAUSE_S / 2) == pytest.approx(MAX_PAUSE_S / 2)
    assert pacer.pause(100.0 + MAX_PAUSE_S) == 0.0
    # Refusals paid for by time already waited do not add up.
    pacer.refused(200.0)
    assert pacer.pause(200.0) == pytest.approx(step)
