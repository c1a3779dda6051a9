"""Many callers' writes in one Cassandra request: group commit for the driver.

A request costs the Python driver about 0.2 ms of CPU and the node about as much again,
however small it is; in a batch of 20, a write cost the driver 30 µs and the node 50 to
90 µs (loopback, Nagle off). The hot path's writes come from many sockets and devices
at once (the gateway's ack writes, the delivery worker's appends), each a request of its
own at a few messages per device per second: so those go through ``SharedBatches``.

- What callers hand in during one turn of the event loop leaves together, as few
  unlogged batches as ``pack`` can make. Nothing waits for a timer: a lone write leaves
  on the next turn, as before. While ``IN_FLIGHT`` shared requests are under way, new
  writes wait for one of them to end, and the longer that takes the more leave together.
- A caller's own writes always stay in one batch, which the node applies atomically per
  partition, as when they went alone; the caller hears the batch's outcome.
- Callers that touch the same partition never share a batch: in one batch their writes
  would carry the same timestamp (the later would not win by being later).
- A shared batch stays under the node's default warnings (``batch_size_warn_threshold``
  5 KiB, ``unlogged_batch_across_partitions_warn_threshold`` 10 partitions), which would
  otherwise log a line per request on the node and in the driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_BYTES = 4096
"""Estimated bytes of one shared batch (the node warns past 5 KiB of mutations)."""
MAX_PARTITIONS = 10
"""Partitions of one shared batch (the node warns past 10 in an unlogged batch)."""
IN_FLIGHT = 4
"""Shared requests under way at once; writes handed in meanwhile wait and go together."""
STATEMENT_BYTES = 16
"""What a statement adds to its values' bytes in the estimate (keys, cell overhead)."""


@dataclass(eq=False, slots=True)
class Write:
    """One caller's statements (bound), as they go in a batch."""

    name: str
    statements: list[Any]
    size: int
    partitions: frozenset[Hashable]
    done: asyncio.Future[None] = field(repr=False)


def estimated_size(params: Sequence[Any]) -> int:
    """Bytes the values add to a batch, near enough to stay under the node's warning."""
    size = STATEMENT_BYTES
    for value in params:
        size += len(value) if isinstance(value, str | bytes) else 8
    return size


def pack(writes: Sequence[Write], max_bytes: int, max_partitions: int) -> list[list[Write]]:
    """Writes into batches, first fit, in the order handed in. A write shares a batch
    only within both bounds and with no partition in common; one that is past a bound
    on its own goes alone (as it would have without sharing)."""
    batches: list[tuple[list[Write], set[Hashable], list[int]]] = []
    for write in writes:
        for members, partitions, size in batches:
            if (
                size[0] + write.size <= max_bytes
                and partitions.isdisjoint(write.partitions)
                and len(partitions) + len(write.partitions) <= max_partitions
            ):
                members.append(write)
                partitions |= write.partitions
                size[0] += write.size
                break
        else:
            batches.append(([write], set(write.partitions), [write.size]))
    return [members for members, _, _ in batches]


Send = Callable[[Sequence[Write]], Awaitable[None]]
"""Sends the writes of one batch as one request; raises what they are all told."""


class SharedBatches:
    """The shared requests of one ``Cql`` (one event loop)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._waiting: list[Write] = []
        self._scheduled = False
        self._in_flight = 0
        self._requests: set[asyncio.Future[None]] = set()
        """The requests under way (held, so none is garbage-collected mid-way)."""

    def write(
        self, name: str, statements: list[Any], partitions: frozenset[Hashable], size: int
    ) -> Write:
        """Hand in one caller's bound statements, the partitions they write (anything
        that tells one partition key from another) and their ``estimated_size``; await
        the returned write's ``done``."""
        loop = asyncio.get_running_loop()
        write = Write(name, statements, size, partitions, loop.create_future())
        self._waiting.append(write)
        if not self._scheduled and self._in_flight < IN_FLIGHT:
            self._scheduled = True
            loop.call_soon(self._flush)
        return write

    def _flush(self) -> None:
        self._scheduled = False
        if not self._waiting or self._in_flight >= IN_FLIGHT:
            return
        writes, self._waiting = self._waiting, []
        batches = pack(writes, MAX_BYTES, MAX_PARTITIONS)
        # Past the bound of requests under way, the rest wait for the next flush.
        room = IN_FLIGHT - self._in_flight
        for members in batches[room:]:
            self._waiting += members
        for members in batches[:room]:
            self._in_flight += 1
            request = asyncio.ensure_future(self._run(members))
            self._requests.add(request)
            request.add_done_callback(self._requests.discard)

    async def _run(self, members: list[Write]) -> None:
        try:
            await self._send(members)
        except asyncio.CancelledError:  # the loop is shutting down
            for write in members:
                write.done.cancel()
            raise
        except BaseException as exc:
            for write in members:
                if not write.done.done():
                    write.done.set_exception(exc)
        else:
            for write in members:
                if not write.done.done():
                    write.done.set_result(None)
        finally:
            self._in_flight -= 1
            if self._waiting and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
