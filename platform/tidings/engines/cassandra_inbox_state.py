"""Where rows go in a device's Cassandra inbox, and what this process knows of that
inbox between reads: its watermark, the days that may hold unacked rows, and the rows
acked out of order (``InboxState``, kept per device by ``InboxStates``).

Reading it (``inbox_state`` and ``inbox_acked``) was two of the three statements of every
fetch and two of the four of every ack, and at a few messages per socket each second
most of the Cassandra work of the message path. It changes in two ways only:

- acks move the watermark, record out-of-order acks and prune days. The gateway holding
  the device's socket writes them, and it updates its copy as it writes;
- appends add days. An append never places a row earlier than ``RECENT_MS`` before its
  own clock (``position``), so a reader that also looks at the days around its clock
  (``recent_days``) sees every row appended since its copy was read, as long as the two
  clocks are within ``SKEW_MS`` of each other.

So a fetch reads no state while its copy is fresh, and an ack reads it again only before
its watermark would move into a later day (a day it never saw might lie between: a
row there would be passed unacked). A copy is read again after ``REFRESH_MS``: a device
that acked through another process meanwhile (it reconnected there) is seen here again
within seconds, and until then this copy can only be behind, which delivers an acked
row again (clients drop it by server id) and never passes a row unacked.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from tidings.errors import InvalidInput

DAY_MS = 86_400_000
RECENT_MS = 60_000
"""An appended row is placed no earlier than this before the appender's clock: a late
envelope (replayed from a backlog, stamped days ago) goes to a recent day, after
everything, never into a day a reader no longer looks at."""
SKEW_MS = 600_000
"""How far apart the clocks of appenders and readers may be: a reader looks at the days
within this of its own clock besides those it knows of."""
REFRESH_MS = 10_000
"""How long a copy of a device's inbox state is used before it is read again."""
MAX_CACHED = 65_536
"""Copies kept (the least recently used go first): about 100 bytes each, so a gateway's
sockets all fit, and a process that stopped serving a device forgets it soon."""

Key = tuple[int, str]
"""A row's position in its inbox: (pos, server_id), ordered as Cassandra orders them."""
START: Key = (-1, "")

Row = dict[str, Any]


def encode_cursor(key: Key) -> str:
    pos, server_id = key
    return f"{pos // DAY_MS:06d}.{pos:015d}.{server_id}"


def decode_cursor(cursor: str) -> Key:
    try:
        day, pos, server_id = cursor.split(".", 2)
        key = (int(pos), server_id)
        if int(day) != key[0] // DAY_MS:
            raise ValueError(cursor)
    except ValueError as exc:
        raise InvalidInput(f"inbox cursor {cursor!r} is not one this store issued") from exc
    return key


def position(timestamp: int, last: int, now_ms: int) -> int:
    """Where a row stamped ``timestamp`` goes after the inbox's ``last`` position: at its
    timestamp, but after every earlier row and no earlier than ``RECENT_MS`` ago."""
    return max(timestamp, last + 1, now_ms - RECENT_MS)


def recent_days(now_ms: int) -> set[int]:
    """The days a row appended lately can be in, by a clock within ``SKEW_MS`` of the
    appender's: one day, two around midnight."""
    return set(range((now_ms - SKEW_MS - RECENT_MS) // DAY_MS, (now_ms + SKEW_MS) // DAY_MS + 1))


class InboxState:
    """A device's inbox state as read at ``read_at`` (ms), kept up to date by this
    process's own acks."""

    def __init__(self, state: list[Row], acked: list[Row], read_at: int) -> None:
        head = state[0] if state else {}
        wm_pos, wm_sid = head.get("wm_pos"), head.get("wm_sid")
        self.watermark: Key | None = (
            None if wm_pos is None or wm_sid is None else (int(wm_pos), str(wm_sid))
        )
        self.days = {int(r["day"]) for r in state if r.get("day") is not None}
        self.acked = {
            key for r in acked if (key := (int(r["pos"]), str(r["server_id"]))) > self.floor
        }
        self.read_at = read_at

    @property
    def floor(self) -> Key:
        """Everything up to here is acked (and deleted)."""
        return self.watermark or START

    def days_from(self, start: Key, now_ms: int) -> list[int]:
        """The days to read from ``start`` on: those listed, and the recent ones."""
        first = start[0] // DAY_MS if start[0] >= 0 else None
        days = self.days | {d for d in recent_days(now_ms) if first is None or d >= first}
        return sorted(d for d in days if first is None or d >= first)

    def saw(self, day: int) -> None:
        """Rows were read in ``day``: it stays among the days to read when no longer recent."""
        self.days.add(day)

    def acked_now(self, keys: set[Key], watermark: Key | None, keep_from: int | None) -> None:
        """What an ack wrote: ``keys`` acked, the watermark moved to ``watermark`` and the
        days before ``keep_from`` pruned."""
        self.watermark = watermark
        self.acked = {key for key in self.acked | keys if key > self.floor}
        if keep_from is not None:
            self.days = {d for d in self.days if d >= keep_from}


class InboxStates:
    """The copies, per device, least recently used first."""

    def __init__(self, limit: int = MAX_CACHED) -> None:
        self.limit = limit
        self._copies: OrderedDict[tuple[str, int], InboxState] = OrderedDict()

    def fresh(self, device: tuple[str, int], now_ms: int) -> InboxState | None:
        """The copy, unless there is none or it is older than ``REFRESH_MS``."""
        copy = self._copies.get(device)
        if copy is None or not 0 <= now_ms - copy.read_at < REFRESH_MS:
            return None
        self._copies.move_to_end(device)
        return copy

    def keep(self, device: tuple[str, int], copy: InboxState) -> None:
        self._copies[device] = copy
        self._copies.move_to_end(device)
        while len(self._copies) > self.limit:
            self._copies.popitem(last=False)

    def current(self, device: tuple[str, int], copy: InboxState) -> bool:
        """``copy`` is still the one kept (a newer read may have replaced it)."""
        return self._copies.get(device) is copy

    def forget(self, device: tuple[str, int]) -> None:
        self._copies.pop(device, None)


class AckWalk:
    """An ack's decision: the rows it acks (``targets``: key -> day), those read on the
    way (``found``), the watermark they lead to, and the day of the first unacked row."""

    def __init__(self, inbox: InboxState, targets: dict[Key, int]) -> None:
        self.was = inbox.watermark
        self.targets = targets
        self.found: dict[Key, bytes] = {}
        self.watermark = inbox.watermark
        self.stopped_on: int | None = None

    @property
    def crosses_days(self) -> bool:
        """The watermark moves into a later day than it was in (or into its first)."""
        if self.watermark is None or self.watermark == self.was:
            return False
        return self.was is None or self.watermark[0] // DAY_MS > self.was[0] // DAY_MS
