"""A phase's figures from its bookkeeping and two meter samples: the dictionaries that are
printed and that ``--json`` emits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from _client import Conn, Sink
from _meter import Meter, Sample
from _traffic import Traffic


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p95/p99/max/mean of ``values`` (seconds) in milliseconds; None when empty."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] * scale, 2)

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1] * scale, 2),
        "mean": round(sum(ordered) / n * scale, 2),
    }


def per_1k(cpu: dict[str, float], items: int) -> dict[str, float]:
    """Server CPU seconds per 1,000 ``items`` (at least one), per process."""
    return {k: round(v / max(1, items) * 1000, 4) for k, v in cpu.items()}


def sockets(wanted: int, connected: int, sink: Sink) -> dict[str, Any]:
    return {
        "wanted": wanted,
        "connected": connected,
        "refused": dict(sink.refused),
        "closed_by_server": dict(sink.closes),
        "closed_total": sum(sink.closes.values()),
    }


def message_figures(
    traffic: Traffic,
    s0: Sample,
    s1: Sample,
    span: float,
    rconns: Sequence[Conn | None],
    timed_out: bool,
) -> dict[str, Any]:
    lost_keys = set(traffic.accepted) - set(traffic.got)
    closed_receivers = {i for i, c in enumerate(rconns) if c is None or c.close_code}
    lost_closed = sum(1 for sender, _ in lost_keys if sender in closed_receivers)
    delivered = len(traffic.got)
    usage = Meter.delta(s0, s1)
    return {
        "timed_out": timed_out,
        "messages": {
            "attempted": traffic.attempted,
            "sent": len(traffic.accepted),
            "delivered": delivered,
            "lost": len(lost_keys),
            "lost_receiver_closed": lost_closed,
            "duplicates": traffic.duplicates,
            "reordered": traffic.reordered(),
            "malformed": traffic.malformed,
            "refused": dict(traffic.send_refused),
            "refused_example": traffic.refused_example,
            "retried": traffic.retried,
            "unsent_sender_closed": traffic.unsent,
            "receipts_acked": traffic.receipt_frames,
            "receipts_missing": len(traffic.unreceipted or ()),
            "messages_receipted": len(
                traffic.receipted & {s for _, s in traffic.accepted.values()}
            ),
        },
        "seconds": round(span, 3),
        "throughput": round(delivered / span, 1) if span > 0 and delivered else 0.0,
        "throughput_unit": "msg/s",
        "latency_ms": percentiles(traffic.latency),
        "accept_latency_ms": percentiles(traffic.accept_latency),
        **usage,
        "cpu_per_1k": per_1k(usage["server_cpu_s"], delivered),
        "cpu_per_1k_unit": "server CPU s per 1,000 delivered messages",
    }


def socket_figures(
    sink: Sink,
    s0: Sample,
    s1: Sample,
    wanted: int,
    connected: list[Conn],
    connect_s: float,
    timed_out: bool,
) -> dict[str, Any]:
    usage = Meter.delta(s0, s1)
    last_ready = max((c.ready_at for c in connected), default=s0.wall)
    return {
        "timed_out": timed_out,
        "sockets": sockets(wanted, len(connected), sink),
        "accepted": len(connected),
        "refused": sum(sink.refused.values()),
        "closed": sum(sink.closes.values()),
        "seconds": round(connect_s, 3),
        "time_to_all_connected_s": round(last_ready - s0.wall, 3),
        "throughput": round(len(connected) / max(1e-9, last_ready - s0.wall), 1),
        "throughput_unit": "connects/s",
        "latency_ms": percentiles([c.ready_at - c.started for c in connected]),
        "latency_from": "connect start to queue-empty",
        **usage,
        "cpu_per_1k": per_1k(usage["server_cpu_s"], len(connected)),
        "cpu_per_1k_unit": "server CPU s per 1,000 connected sockets",
    }
