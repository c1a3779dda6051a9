"""What ``tidings bench load`` counts and how it prints it.

Every payload is ``{"lg": id, "ts": send time}`` inside the message text, so the
receiving app layer can measure send -> decrypt latency and spot the same id twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def payload(message_id: str, sent_at: float) -> str:
    """The app text a load message carries (encrypted with the rest in e2ee mode)."""
    return json.dumps({"lg": message_id, "ts": sent_at}, separators=(",", ":"))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); NaN without values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float]) -> dict[str, float | None]:
    def one(q: float) -> float | None:
        return round(percentile(values, q) * 1000, 2) if values else None

    return {"p50": one(0.5), "p95": one(0.95), "p99": one(0.99), "max": one(1.0)}


@dataclass
class Tally:
    """Expected, accepted and received copies of every load message (and warm-ups)."""

    expected: dict[str, frozenset[int]] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    received: dict[str, set[int]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    accept_latencies: list[float] = field(default_factory=list)
    duplicates: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_receive: float = 0.0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on every counted copy (the drain waits on it)."""

    def expect(self, message_id: str, recipients: Iterable[int]) -> None:
        self.expected[message_id] = frozenset(recipients)

    def accept(self, message_id: str, after: float) -> None:
        self.accepted.add(message_id)
        if not message_id.startswith("w"):
            self.accept_latencies.append(after)

    # Sink ---------------------------------------------------------------------------
    def received_text(self, device: int, text: str, at: float) -> str | None:
        """Count a copy ``device`` got; returns its message id when it is the copy's
        first arrival (None for a duplicate, a misrouted copy or a foreign payload)."""
        try:
            body = json.loads(text)
            message_id, sent_at = str(body["lg"]), float(body["ts"])
        except (ValueError, TypeError, KeyError):
            self.errors["foreign_payload"] += 1
            return None
        got = self.received.setdefault(message_id, set())
        if device in got:
            self.duplicates += 1
            return None
        if device not in self.expected.get(message_id, frozenset()):
            self.errors["misrouted"] += 1
            return None
        got.add(device)
        self.arrived.set()
        if not message_id.startswith("w"):
            self.latencies.append(at - sent_at)
            self.last_receive = max(self.last_receive, at)
        return message_id

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def missing(self, message_ids: Iterable[str]) -> int:
        """Recipient copies of accepted ``message_ids`` not received yet."""
        return sum(
            len(self.expected[m] - self.received.get(m, set()))
            for m in message_ids
            if m in self.accepted
        )


class TallySink:
    """Adapts :class:`Tally` to the devices' ``Sink`` protocol."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def received(self, device: int, text: str, at: float) -> None:
        self.tally.received_text(device, text, at)

    def error(self, kind: str) -> None:
        self.tally.error(kind)


@dataclass
class Phases:
    """Wall-clock marks of one run (``time.time()``)."""

    started: float = field(default_factory=time.time)
    registered: float = 0.0
    warmed: float = 0.0
    load_start: float = 0.0
    sends_done: float = 0.0
    drained: float = 0.0
    scheduler_lag: float = 0.0


def summary(
    config: dict[str, Any], tally: Tally, ids: list[str], phases: Phases, redeliveries: int
) -> dict[str, Any]:
    """The run's figures as one JSON-ready object."""
    sent = [m for m in ids if m in tally.accepted]
    expected = sum(len(tally.expected[m]) for m in sent)
    lost = tally.missing(sent)
    delivered = sum(1 for m in sent if tally.expected[m] <= tally.received.get(m, set()))
    copies = sum(len(tally.received.get(m, set())) for m in ids)
    send_span = max(phases.sends_done - phases.load_start, 1e-9)
    recv_span = max(tally.last_receive - phases.load_start, 1e-9)
    return {
        "config": config,
        "scheduled": len(ids),
        "sent": len(sent),
        "delivered": delivered,
        "copies": {"expected": expected, "received": copies},
        "throughput": {
            "sent_per_s": round(len(sent) / send_span, 1),
            "copies_delivered_per_s": round(copies / recv_span, 1) if copies else 0.0,
        },
        "latency_ms": _ms(tally.latencies),
        "accept_ms": _ms(tally.accept_latencies),
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(sorted(tally.errors.items())),
        "lost": lost,
        "duplicates": tally.duplicates,
        "redeliveries": redeliveries,
        "timings_s": {
            "setup": round(phases.registered - phases.started, 2),
            "warm_up": round(phases.warmed - phases.registered, 2),
            "load": round(phases.sends_done - phases.load_start, 2),
            "drain": round(phases.drained - phases.sends_done, 2),
            "scheduler_lag_max": round(phases.scheduler_lag, 3),
        },
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def table(result: dict[str, Any]) -> str:
    """A human-readable rendering of :func:`summary`."""
    c, lat, acc, t = (
        result["config"],
        result["latency_ms"],
        result["accept_ms"],
        result["timings_s"],
    )
    mode = "e2ee (real SDK)" if c["e2ee"] else "no e2ee (server only)"
    kinds = ", ".join(f"{k} {v}" for k, v in result["error_kinds"].items())
    rows = [
        ("servers", ", ".join(c["servers"])),
        ("mode", mode),
        (
            "load",
            f"{c['clients']} clients, {c['rate']:g} msg/s for {c['duration']:g} s, "
            f"{c['groups']} groups",
        ),
        (
            "messages",
            f"sent {result['sent']} of {result['scheduled']} scheduled, "
            f"delivered {result['delivered']} (to every recipient)",
        ),
        (
            "copies",
            f"{result['copies']['received']} received of {result['copies']['expected']} expected",
        ),
        (
            "throughput",
            f"{result['throughput']['sent_per_s']:.1f} msg/s sent, "
            f"{result['throughput']['copies_delivered_per_s']:.1f} copies/s delivered",
        ),
        (
            "end-to-end",
            f"p50 {_fmt(lat['p50'])}  p95 {_fmt(lat['p95'])}  p99 {_fmt(lat['p99'])}  "
            f"max {_fmt(lat['max'])}  (send -> recipient decrypt)",
        ),
        ("accepted", f"p50 {_fmt(acc['p50'])}  p99 {_fmt(acc['p99'])}  (send -> server accept)"),
        ("errors", f"{result['errors']}" + (f"  ({kinds})" if kinds else "")),
        ("lost", str(result["lost"])),
        (
            "duplicates",
            f"{result['duplicates']}  (redeliveries absorbed: {result['redeliveries']})",
        ),
        (
            "timings",
            f"setup {t['setup']} s, warm-up {t['warm_up']} s, load {t['load']} s, "
            f"drain {t['drain']} s, scheduler lag max {t['scheduler_lag_max'] * 1000:.0f} ms",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
