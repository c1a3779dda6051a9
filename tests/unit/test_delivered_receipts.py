"""The gateway's held ``delivered`` receipts, against a produce that records its calls."""

from __future__ import annotations

import asyncio

import pytest

from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.errors import Forbidden, Unavailable
from tidings.services import delivered_receipts
from tidings.services.context import Principal
from tidings.services.delivered_receipts import DeliveredReceipts

BOB, EVE = Principal("bob", 1), Principal("eve", 2)


def message(server_id: str, sender: str = "alice") -> Envelope:
    return Envelope(server_id, EnvelopeKind.MESSAGE, 1, sender, 1, "bob", 1)


class Producer:
    """Records each produce as {reader: [server ids]}; fails the first ``failures``."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.produced: list[dict[str, list[str]]] = []
        self.failures = failures or []
        self.called = asyncio.Event()

    async def __call__(self, held: list[tuple[Principal, list[Envelope]]]) -> None:
        self.called.set()
        if self.failures:
            raise self.failures.pop(0)
        self.produced.append({p.user_id: [e.server_id for e in acked] for p, acked in held})


def desk(producer: Producer, hold_s: float = 60.0) -> tuple[DeliveredReceipts, list[int]]:
    dropped: list[int] = []
    return DeliveredReceipts(producer, hold_s, dropped.append), dropped


async def test_acks_held_together_become_one_produce_per_moment() -> None:
    producer = Producer()
    receipts, _ = desk(producer, hold_s=0.01)
    receipts.add(BOB, [message("m1")])
    receipts.add(EVE, [message("m9")])
    receipts.add(BOB, [message("m2"), message("m3")])
    await asyncio.wait_for(producer.called.wait(), 5)
    assert producer.produced == [{"bob": ["m1", "m2", "m3"], "eve": ["m9"]}]


async def test_flushed_produces_what_is_held_at_once() -> None:
    producer = Producer()
    receipts, _ = desk(producer)  # the hold alone would wait a minute
    receipts.add(BOB, [message("m1")])
    assert producer.produced == []
    await receipts.flushed()
    assert producer.produced == [{"bob": ["m1"]}]
    await receipts.flushed()  # nothing held: nothing produced again
    assert len(producer.produced) == 1


async def test_a_retryable_failure_is_tried_again_while_later_receipts_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivered_receipts, "FIRST_PAUSE_S", 0.0)
    producer = Producer([Unavailable("kafka: down")])
    receipts, dropped = desk(producer)
    receipts.add(BOB, [message("m1")])
    await receipts.flushed()  # returns after the first (failed) try
    receipts.add(EVE, [message("m2")])
    await receipts.close()
    assert sorted(map(str, producer.produced)) == sorted(
        [str({"bob": ["m1"]}), str({"eve": ["m2"]})]
    )
    assert dropped == []


async def test_receipts_are_dropped_and_counted_after_every_try_or_when_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivered_receipts, "FIRST_PAUSE_S", 0.0)
    monkeypatch.setattr(delivered_receipts, "LONGEST_PAUSE_S", 0.0)
    attempts = delivered_receipts.ATTEMPTS
    producer = Producer([Unavailable("kafka: down")] * attempts)
    receipts, dropped = desk(producer)
    receipts.add(BOB, [message("m1"), message("m2")])
    await receipts.close()
    assert producer.produced == []
    assert dropped == [2]
    assert producer.failures == []  # every try was made

    refused = Producer([Forbidden("no")])
    receipts, dropped = desk(refused)
    receipts.add(BOB, [message("m1")])
    await receipts.close()
    assert dropped == [1]


async def test_close_produces_what_is_held() -> None:
    producer = Producer()
    receipts, _ = desk(producer)
    receipts.add(BOB, [message("m1")])
    await receipts.close()
    assert producer.produced == [{"bob": ["m1"]}]


async def test_close_gives_up_on_a_produce_still_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivered_receipts, "FIRST_PAUSE_S", 60.0)
    monkeypatch.setattr(delivered_receipts, "CLOSE_WAIT_S", 0.05)
    producer = Producer([Unavailable("kafka: down")])
    receipts, dropped = desk(producer)
    receipts.add(BOB, [message("m1"), message("m2"), message("m3")])
    await receipts.close()  # bounded: the retry would come a minute later
    assert producer.produced == []
    assert dropped == [3]
