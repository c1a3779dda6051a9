"""Point reads of many callers in one request: ``... WHERE key IN ?``.

A request costs the Python driver about 0.2 ms of CPU however little it carries, and a
connecting socket made four point reads (its session, its inbox state, its out-of-order
acks, its rows): in a connect storm the driver was the gateway's largest cost. Reads of
one statement by the callers of one turn of the event loop go as one ``IN`` query per
value of the key's other columns, at most ``MAX_KEYS`` keys apiece; each caller gets
the rows of its own key, in the order the node answered them (clustering order within
a partition). A lone reader keeps its single-partition statement (token-aware, the
cheapest for the node), so nothing changes when the gateway is quiet.

The decisions (``plan``, ``split``) are pure; ``SharedReads`` is the loop-turn
plumbing around them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_KEYS = 16
"""Keys per ``IN`` query: the node reads each partition for the request, so a bound
keeps one request's work (and its coordinator's fan-out on a cluster) small."""

Row = dict[str, Any]


@dataclass(frozen=True)
class PointRead:
    """One read in its two forms: ``one`` (``key = ?`` first, then ``rest``) and
    ``many`` (``key IN ?`` first, then the same ``rest``; it selects the key column,
    named ``column``)."""

    one: Any
    many: Any
    column: str


def plan(keys: Sequence[Hashable], limit: int = MAX_KEYS) -> list[list[Hashable]]:
    """The requests for ``keys`` (distinct, in order): at most ``limit`` apiece."""
    return [list(keys[i : i + limit]) for i in range(0, len(keys), limit)]


def split(rows: Sequence[Row], column: str, keys: Sequence[Hashable]) -> dict[Hashable, list[Row]]:
    """Each key's rows (none for a key the node had nothing for); rows of keys not
    asked for are dropped."""
    out: dict[Hashable, list[Row]] = {key: [] for key in keys}
    for row in rows:
        mine = out.get(row[column])
        if mine is not None:
            mine.append(row)
    return out


Waiters = dict[Hashable, "asyncio.Future[list[Row]]"]
"""The future of each key's rows, shared by the callers of that key."""

Run = Callable[[Any, Sequence[Any]], Awaitable[list[Row]]]
"""Runs a statement with its parameters (``Cql.run``: errors already translated)."""


class SharedReads:
    def __init__(self, run: Run) -> None:
        self._run = run
        self._waiting: dict[tuple[PointRead, tuple[Any, ...]], Waiters] = {}
        self._requests: set[asyncio.Future[None]] = set()
        """Requests under way (held, so none is garbage-collected mid-way)."""

    async def read(self, read: PointRead, key: Hashable, rest: tuple[Any, ...] = ()) -> list[Row]:
        """The rows of ``key`` (with ``rest`` for the key's other columns)."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._flush)
        waiters = self._waiting.setdefault((read, rest), {})
        rows = waiters.get(key)
        if rows is None:  # two callers of one key share its rows
            rows = waiters[key] = loop.create_future()
        # A cancelled caller must not cancel the rows another caller of its key awaits.
        return list(await asyncio.shield(rows))

    def _flush(self) -> None:
        groups, self._waiting = self._waiting, {}
        for (read, rest), waiters in groups.items():
            for keys in plan(list(waiters)):
                request = asyncio.ensure_future(self._fetch(read, rest, keys, waiters))
                self._requests.add(request)
                request.add_done_callback(self._requests.discard)

    async def _fetch(
        self,
        read: PointRead,
        rest: tuple[Any, ...],
        keys: list[Hashable],
        waiters: Waiters,
    ) -> None:
        try:
            if len(keys) == 1:
                found = {keys[0]: await self._run(read.one, (keys[0], *rest))}
            else:
                found = split(await self._run(read.many, (keys, *rest)), read.column, keys)
        except asyncio.CancelledError:
            for key in keys:
                waiters[key].cancel()
            raise
        except Exception as exc:
            for key in keys:
                if not waiters[key].done():
                    waiters[key].set_exception(exc)
            return
        for key in keys:
            if not waiters[key].done():
                waiters[key].set_result(found[key])
