"""Many callers' writes in one Cassandra request: packing and flushing, without a node."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.engines import cassandra_batching
from tidings.engines.cassandra_batching import SharedBatches, Write, estimated_size, pack


def write(name: str, size: int = 100, partitions: Sequence[bytes] = ()) -> Write:
    never_awaited = cast("asyncio.Future[None]", None)  # pack does not look at it
    return Write(name, [name], size, frozenset(partitions or [name.encode()]), never_awaited)


def names(batches: list[list[Write]]) -> list[list[str]]:
    return [[w.name for w in batch] for batch in batches]


def test_estimated_size_counts_the_values() -> None:
    overhead = cassandra_batching.STATEMENT_BYTES
    assert estimated_size(("bob", 1, b"x" * 100)) == overhead + 3 + 8 + 100


def test_pack_keeps_order_and_fills_each_batch_within_its_bounds() -> None:
    writes = [write(f"w{i}", size=1000) for i in range(9)]
    assert names(pack(writes, 4096, 10)) == [
        ["w0", "w1", "w2", "w3"],
        ["w4", "w5", "w6", "w7"],
        ["w8"],
    ]
    many = [write(f"p{i}", size=10, partitions=[b"a%d" % i, b"b%d" % i]) for i in range(7)]
    assert [len(b) for b in pack(many, 4096, 10)] == [5, 2]  # 10 partitions a batch


def test_pack_never_puts_two_writes_of_one_partition_together() -> None:
    first = write("first", partitions=[b"bob/1", b"bob/1/day"])
    other = write("other", partitions=[b"eve/1"])
    again = write("again", partitions=[b"bob/1"])
    assert names(pack([first, other, again], 4096, 10)) == [["first", "other"], ["again"]]


def test_a_write_past_a_bound_goes_alone() -> None:
    big = write("big", size=9000)
    wide = write("wide", partitions=[b"%d" % i for i in range(12)])
    small = write("small")
    assert names(pack([big, wide, small], 4096, 10)) == [["big"], ["wide"], ["small"]]


@given(
    st.lists(
        st.tuples(st.integers(1, 3000), st.sets(st.sampled_from("abcdefghijkl"), min_size=1)),
        max_size=30,
    )
)
def test_pack_property(specs: list[tuple[int, set[str]]]) -> None:
    writes = [
        write(f"w{i}", size, [p.encode() for p in parts]) for i, (size, parts) in enumerate(specs)
    ]
    batches = pack(writes, 4096, 10)
    assert sorted(w.name for b in batches for w in b) == sorted(w.name for w in writes)
    for batch in batches:
        assert [writes.index(w) for w in batch] == sorted(writes.index(w) for w in batch)
        if len(batch) > 1:
            assert sum(w.size for w in batch) <= 4096
            assert sum(len(w.partitions) for w in batch) <= 10
            assert len(set().union(*(w.partitions for w in batch))) == sum(
                len(w.partitions) for w in batch
            )


class Node:
    """Stands for the driver: records each request, answers when told to."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.answers: list[asyncio.Future[None]] = []

    async def send(self, writes: Sequence[Write]) -> None:
        self.requests.append([w.name for w in writes])
        answer = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        await answer


def hand_in(shared: SharedBatches, name: str, partition: str | None = None) -> Write:
    return shared.write(name, [name], frozenset([(partition or name).encode()]), 100)


async def until(condition: Callable[[], object], turns: int = 100) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_writes_handed_in_one_turn_leave_in_one_request() -> None:
    node = Node()
    shared = SharedBatches(node.send)
    writes = [hand_in(shared, f"w{i}") for i in range(3)]
    await until(lambda: node.requests)
    assert node.requests == [["w0", "w1", "w2"]]
    node.answers[0].set_result(None)
    await asyncio.gather(*(w.done for w in writes))


async def test_a_lone_write_leaves_on_the_next_turn() -> None:
    node = Node()
    shared = SharedBatches(node.send)
    hand_in(shared, "alone")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert node.requests == [["alone"]]


async def test_past_the_requests_in_flight_writes_wait_and_then_leave_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cassandra_batching, "IN_FLIGHT", 1)
    node = Node()
    shared = SharedBatches(node.send)
    first = hand_in(shared, "first")
    await until(lambda: node.requests)
    later = [hand_in(shared, "a"), hand_in(shared, "b")]
    for _ in range(5):
        await asyncio.sleep(0)
    assert node.requests == [["first"]]  # held while the first is under way
    node.answers[0].set_result(None)
    await first.done
    await until(lambda: len(node.requests) == 2)
    assert node.requests[1] == ["a", "b"]
    node.answers[1].set_result(None)
    await asyncio.gather(*(w.done for w in later))


async def test_a_failed_request_fails_its_writes_only() -> None:
    node = Node()
    shared = SharedBatches(node.send)
    one = hand_in(shared, "one", partition="bob")
    two = hand_in(shared, "two", partition="bob")  # same partition: a request of its own
    await until(lambda: len(node.requests) == 2)
    node.answers[0].set_exception(OSError("connection reset"))
    node.answers[1].set_result(None)
    with pytest.raises(OSError, match="connection reset"):
        await one.done
    await two.done
