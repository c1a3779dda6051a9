"""The bus workers' loop: a batch is committed only after it is handled, the commit runs
while the next batch is polled, commits land in order, and stopping waits for the last."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tidings.ports import Record
from tidings.services.consuming import consume


def _batch(first: int, count: int) -> list[Record]:
    return [Record("t", 0, offset, "k", b"v") for offset in range(first, first + count)]


class HeldCommits:
    """A consumer (the port's shape) whose commits wait until the test lets them go."""

    def __init__(self, batches: list[list[Record]]) -> None:
        self.batches = batches
        self.events: list[str] = []
        self.release: dict[int, asyncio.Event] = {}

    async def poll(self, max_records: int, timeout: float) -> list[Record]:
        if not self.batches:
            await asyncio.sleep(0)
            return []
        batch = self.batches.pop(0)
        self.events.append(f"poll {batch[0].offset}")
        return batch

    async def commit(self, records: Sequence[Record]) -> None:
        last = records[-1].offset
        self.events.append(f"commit {last} started")
        await self.release.setdefault(last, asyncio.Event()).wait()
        self.events.append(f"commit {last} done")

    async def close(self) -> None:
        self.events.append("closed")


class OneConsumerBus:
    def __init__(self, consumer: HeldCommits) -> None:
        self._consumer = consumer

    def consumer(self, topic: str, group: str) -> Any:
        return self._consumer


async def _until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_the_next_batch_is_polled_and_handled_while_a_commit_is_under_way() -> None:
    consumer = HeldCommits([_batch(0, 3), _batch(3, 2)])
    handled: list[int] = []
    stop = asyncio.Event()

    async def handle(records: list[Record]) -> None:
        handled.extend(r.offset for r in records)

    worker = asyncio.create_task(
        consume(OneConsumerBus(consumer), "t", "g", handle, stop, batch=10, what="test")  # type: ignore[arg-type]
    )
    # The first commit is held (never released yet), and the second batch is polled
    # and handled meanwhile.
    await _until(lambda: handled == [0, 1, 2, 3, 4] and "commit 2 started" in consumer.events)
    assert "commit 2 done" not in consumer.events
    assert "commit 4 started" not in consumer.events  # one commit at a time, in order
    consumer.release.setdefault(2, asyncio.Event()).set()
    await _until(lambda: "commit 4 started" in consumer.events)
    stop.set()
    consumer.release.setdefault(4, asyncio.Event()).set()
    await asyncio.wait_for(worker, 5.0)
    assert consumer.events.index("commit 2 done") < consumer.events.index("commit 4 started")
    assert consumer.events[-2:] == ["commit 4 done", "closed"]


async def test_stopping_waits_for_the_last_commit_before_closing() -> None:
    consumer = HeldCommits([_batch(0, 2)])
    stop = asyncio.Event()

    async def handle(records: list[Record]) -> None:
        stop.set()  # stop right after this batch

    worker = asyncio.create_task(
        consume(OneConsumerBus(consumer), "t", "g", handle, stop, batch=10, what="test")  # type: ignore[arg-type]
    )
    await _until(lambda: "commit 1 started" in consumer.events)
    assert not worker.done()
    assert "closed" not in consumer.events
    consumer.release.setdefault(1, asyncio.Event()).set()
    await asyncio.wait_for(worker, 5.0)
    assert consumer.events[-2:] == ["commit 1 done", "closed"]
