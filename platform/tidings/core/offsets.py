"""Out-of-order processing, in-order commits: which offsets are safe to commit.

A worker that finishes records in any order may only commit, per partition, up to
the last record before the oldest one still unfinished (a bus commit covers every
earlier offset of the partition).

``consumer_lag`` is the one rule for how far a consumer group is behind, shared by the
Kafka bus and the operator.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class OffsetTracker(Generic[T]):
    """Records in flight per partition; ``ready`` yields what may be committed."""

    def __init__(self) -> None:
        self._parts: dict[int, OrderedDict[int, tuple[T, bool]]] = {}

    def add(self, partition: int, offset: int, item: T) -> bool:
        """Track a polled record; False when it is already in flight (a re-poll)."""
        part = self._parts.setdefault(partition, OrderedDict())
        if offset in part:
            return False
        part[offset] = (item, False)
        return True

    def done(self, partition: int, offset: int) -> None:
        part = self._parts.get(partition)
        if part is not None and offset in part:
            part[offset] = (part[offset][0], True)

    def ready(self) -> dict[int, T]:
        """Per partition, the newest record whose predecessors are all done (forgotten
        once returned: commit it)."""
        out: dict[int, T] = {}
        for partition, part in self._parts.items():
            while part:
                offset, (item, finished) = next(iter(part.items()))
                if not finished:
                    break
                del part[offset]
                out[partition] = item
        return out

    @property
    def in_flight(self) -> int:
        return sum(len(p) for p in self._parts.values())


def consumer_lag(
    beginning: Mapping[int, int], end: Mapping[int, int], committed: Mapping[int, int]
) -> dict[int, int]:
    """Records per partition (those of ``end``) a consumer group has not committed yet.

    ``beginning`` and ``end`` are the partitions' log start and end offsets; ``committed``
    the group's next offset to read per partition (absent or ``-1``: no commit). Without
    a commit the group starts at the log start (``auto_offset_reset=earliest``), and a
    commit below the log start (records removed by retention) counts from there too.
    """
    lag = {}
    for partition, last in end.items():
        position = max(beginning.get(partition, 0), committed.get(partition, -1))
        lag[partition] = max(0, last - position)
    return lag
