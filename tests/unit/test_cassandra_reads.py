"""Many callers' point reads in one Cassandra request: planning, splitting and the
loop-turn plumbing, without a node (the statements are stand-ins)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.engines.cassandra_reads import MAX_KEYS, PointRead, SharedReads, plan, split
from tidings.errors import Unavailable

READ = PointRead(one="one", many="many", column="k")


@given(st.lists(st.integers(), unique=True), st.integers(min_value=1, max_value=20))
def test_plan_keeps_every_key_once_in_order_within_the_bound(keys: list[int], limit: int) -> None:
    requests = plan(keys, limit)
    assert [k for r in requests for k in r] == keys
    assert all(1 <= len(r) <= limit for r in requests)


def test_split_gives_each_key_its_rows_in_order_and_drops_the_rest() -> None:
    rows = [{"k": "a", "v": 1}, {"k": "x", "v": 2}, {"k": "a", "v": 3}, {"k": "b", "v": 4}]
    assert split(rows, "k", ["a", "b", "c"]) == {
        "a": [{"k": "a", "v": 1}, {"k": "a", "v": 3}],
        "b": [{"k": "b", "v": 4}],
        "c": [],
    }


class Node:
    """Answers a statement with a row per key it names (``many``: a list of keys)."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[tuple[Any, tuple[Any, ...]]] = []
        self.fail = fail

    async def run(self, query: Any, params: Sequence[Any]) -> list[dict[str, Any]]:
        self.requests.append((query, tuple(params)))
        await asyncio.sleep(0)
        if self.fail:
            raise Unavailable("cassandra: read failed")
        key, *rest = params
        keys = key if query == "many" else [key]
        return [{"k": k, "rest": tuple(rest)} for k in keys if k != "absent"]


async def test_readers_of_one_moment_share_a_request_per_other_key_values() -> None:
    node = Node()
    reads = SharedReads(node.run)
    keys = [f"u{i}" for i in range(MAX_KEYS + 2)]
    answers = await asyncio.gather(
        *(reads.read(READ, k, (1,)) for k in keys),
        reads.read(READ, "u0", (2,)),  # another device id: a request of its own
        reads.read(READ, "u0", (1,)),  # the same key twice: asked once
        reads.read(READ, "absent", (1,)),
    )
    assert answers[: len(keys)] == [[{"k": k, "rest": (1,)}] for k in keys]
    assert answers[len(keys) :] == [[{"k": "u0", "rest": (2,)}], [{"k": "u0", "rest": (1,)}], []]
    many = [p for q, p in node.requests if q == "many"]
    assert [len(p[0]) for p in many] == [MAX_KEYS, 3]  # 18 keys + "absent", bounded
    assert ("one", ("u0", 2)) in node.requests  # a lone reader: its own statement
    assert len(node.requests) == 3
    # Later readers: a new moment, new requests.
    assert await reads.read(READ, "u1", (1,)) == [{"k": "u1", "rest": (1,)}]
    assert node.requests[-1] == ("one", ("u1", 1))


async def test_a_failed_request_fails_its_readers_and_a_cancelled_reader_no_other() -> None:
    node = Node(fail=True)
    reads = SharedReads(node.run)
    answers = await asyncio.gather(
        reads.read(READ, "a"), reads.read(READ, "b"), return_exceptions=True
    )
    assert all(isinstance(a, Unavailable) for a in answers)

    node.fail = False
    gone = asyncio.ensure_future(reads.read(READ, "a"))
    stays = asyncio.ensure_future(reads.read(READ, "a"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await stays == [{"k": "a", "rest": ()}]
    with pytest.raises(asyncio.CancelledError):
        await gone
