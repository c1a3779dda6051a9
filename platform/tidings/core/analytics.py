"""Analytics events: metadata only (counts, sizes, latencies), never content or ids.

Services emit small events; they travel in batches on ``tidings.<region>.analytics``;
the analytics worker folds them into Prometheus metrics and daily aggregates.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tidings.core import jsoncodec

EVENTS = frozenset({"accepted", "stored", "delivered", "push"})
"""accepted: a send the router took (count = device envelopes); stored: envelopes the
delivery worker wrote to inboxes (latency = accept to store); delivered: envelopes a
device acked (latency = accept to ack); push: a push outcome (kind = provider:outcome)."""

MAX_KIND = 64


@dataclass(frozen=True)
class Event:
    name: str
    kind: str
    ts_ms: int
    count: int = 1
    size: int = 0
    latency_ms: int | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"e": self.name, "k": self.kind, "t": self.ts_ms}
        if self.count != 1:
            out["n"] = self.count
        if self.size:
            out["b"] = self.size
        if self.latency_ms is not None:
            out["l"] = self.latency_ms
        return out


def encode_batch(events: Sequence[Event]) -> bytes:
    return jsoncodec.dumps([e.to_json() for e in events])


def _int(value: object, low: int = 0) -> int | None:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= low else None
    )


def decode_batch(data: bytes) -> tuple[list[Event], int]:
    """The well-formed events of a batch and how many were skipped as malformed.

    Analytics must never stall the worker: a bad record is counted, not retried."""
    try:
        raw = jsoncodec.loads(data)
    except (ValueError, UnicodeDecodeError):
        return [], 1
    if not isinstance(raw, list):
        return [], 1
    events: list[Event] = []
    skipped = 0
    for item in raw:
        if not isinstance(item, dict):
            skipped += 1
            continue
        name, kind, ts = item.get("e"), item.get("k"), _int(item.get("t"))
        count, size = _int(item.get("n", 1), 1), _int(item.get("b", 0))
        latency = item.get("l")
        if (
            name not in EVENTS
            or not isinstance(kind, str)
            or not 0 < len(kind) <= MAX_KIND
            or ts is None
            or count is None
            or size is None
            or (latency is not None and _int(latency) is None)
        ):
            skipped += 1
            continue
        events.append(Event(str(name), kind, ts, count, size, latency))
    return events, skipped


DAY_MS = 86_400_000


def day_of(ts_ms: int) -> str:
    return _day(ts_ms // DAY_MS)


@functools.lru_cache(maxsize=8)
def _day(day_number: int) -> str:
    """Every event of a batch falls on one or two days: format each once."""
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * DAY_MS / 1000))


@dataclass
class KindTotals:
    """What one day's events of one name and kind add up to."""

    count: int = 0
    size: int = 0
    latency_ms_sum: int = 0
    latency_n: int = 0


def totals_by_kind(events: Iterable[Event]) -> dict[tuple[str, str, str], KindTotals]:
    """The events summed per (day, name, kind): a batch holds thousands of events of a
    few kinds, and what is named per kind (counters, metric series) is the costly part."""
    sums: dict[tuple[str, str, str], KindTotals] = {}
    for e in events:
        key = (day_of(e.ts_ms), e.name, e.kind)
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = KindTotals()
        acc.count += e.count
        acc.size += e.size
        if e.latency_ms is not None:
            acc.latency_ms_sum += e.latency_ms * e.count
            acc.latency_n += e.count
    return sums


def aggregate(events: Iterable[Event]) -> dict[tuple[str, str], int]:
    """Daily counters: (day, ``<event>.<kind>.<count|bytes|latency_ms_sum|latency_n>``)."""
    return daily_counters(totals_by_kind(events))


def daily_counters(
    sums: Mapping[tuple[str, str, str], KindTotals],
) -> dict[tuple[str, str], int]:
    """``totals_by_kind`` as the daily aggregates' counters (see ``aggregate``)."""
    counters: dict[tuple[str, str], int] = {}
    for (day, name, kind), t in sums.items():
        base = f"{name}.{kind}"
        counters[(day, f"{base}.count")] = t.count
        if t.size:
            counters[(day, f"{base}.bytes")] = t.size
        if t.latency_n:
            counters[(day, f"{base}.latency_ms_sum")] = t.latency_ms_sum
            counters[(day, f"{base}.latency_n")] = t.latency_n
    return counters


def summary(counters: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """A day's counters grouped by ``<event>.<kind>``, with the mean latency."""
    out: dict[str, dict[str, float]] = {}
    for name, value in counters.items():
        base, _, field = name.rpartition(".")
        out.setdefault(base, {})[field] = value
    for fields in out.values():
        n = fields.pop("latency_n", 0)
        total = fields.pop("latency_ms_sum", 0)
        if n:
            fields["latency_ms_mean"] = round(total / n, 3)
    return out


class EventBuffer:
    """Events waiting to be shipped: bounded, oldest dropped first.

    Analytics never slows the message path: ``emit`` is a deque append, and when the
    bus is unreachable for long the oldest events go (counted in ``dropped``)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._events)

    def emit(self, event: Event) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)

    def drain(self, limit: int) -> list[Event]:
        return [self._events.popleft() for _ in range(min(limit, len(self._events)))]

    def requeue(self, events: Sequence[Event]) -> None:
        """Put events that could not be shipped back in front, as far as room allows."""
        room = (self._events.maxlen or 0) - len(self._events)
        keep = list(events)[-room:] if room > 0 else []
        self.dropped += len(events) - len(keep)
        self._events.extendleft(reversed(keep))
