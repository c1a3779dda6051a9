"""A socket's frame budgets: once its device's bucket refused, the socket refuses that
kind by itself until a token can be back, without asking the limiter."""

from __future__ import annotations

from typing import Any, cast

from tidings.core import wsproto
from tidings.core.ratelimit import Decision, Limit
from tidings.engines.embedded.presence import MemoryPresenceStore
from tidings.errors import RateLimited
from tidings.metrics import Metrics
from tidings.services.context import Context, Principal
from tidings.services.frame_limits import REFUSAL_MEMORY_S, FrameBudgets


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


async def test_a_socket_past_its_budget_is_held_until_a_token_can_be_back() -> None:
    clock = Clock()
    nothing = cast(Any, None)
    ctx = Context(
        *(nothing,) * 4, buckets=CountingLimiter(clock), keys=nothing, bus=nothing,
        blobs=nothing, aggregates=nothing, otp=nothing, clock=clock, metrics=Metrics.create(),
    )  # fmt: skip
    budgets = FrameBudgets(ctx, Principal("mallory", 1))
    assert await budgets.over_budget(typing(20)) == {}
    assert budgets.held_for() == 0.0  # within its budget: read at wire speed

    await budgets.over_budget(typing(3))  # past it: the bucket refills in half a second
    assert budgets.held_for() == 0.5
    clock.now += 0.2
    assert abs(budgets.held_for() - 0.3) < 1e-9
    clock.now += 0.3  # a token is back, but the refusal is recent: still held a moment
    assert abs(budgets.held_for() - (REFUSAL_MEMORY_S - 0.5)) < 1e-9
    await budgets.over_budget(typing(50))  # floods again: refused, held again
    assert budgets.held_for() > 0
    clock.now += REFUSAL_MEMORY_S  # quiet long enough: read at wire speed again
    assert budgets.held_for() == 0.0
