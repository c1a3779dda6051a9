"""How long the SDK waits between reconnects: a lost region is asked about again
within a few seconds (its shards move within the peers' detection window), while a
client that reaches no gateway at all backs off to half a minute."""

from __future__ import annotations

from tidings.client.receiving import FAILOVER_RETRY_S, RECONNECT_MAX_S, reconnect_wait


def waits(first: float, count: int, *, region_answered: bool) -> list[float]:
    found, wait = [], first
    for _ in range(count):
        wait = reconnect_wait(wait, region_answered=region_answered)
        found.append(wait)
    return found


def test_no_gateway_answering_backs_off_to_the_long_cap() -> None:
    assert waits(0.5, 8, region_answered=False) == [1, 2, 4, 8, 16, 30, 30, 30]
    assert RECONNECT_MAX_S == 30


def test_a_lost_region_is_asked_about_again_every_few_seconds() -> None:
    assert waits(0.5, 6, region_answered=True) == [1, 2, 4, 4, 4, 4]
    assert FAILOVER_RETRY_S == 4
    # A long wait already reached (nothing answered for a while) shrinks at once when a
    # region answers again.
    assert reconnect_wait(30.0, region_answered=True) == FAILOVER_RETRY_S
