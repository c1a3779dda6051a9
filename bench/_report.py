"""The printed report: a block per phase, then one summary table; and the warnings a phase
deserves."""

from __future__ import annotations

from typing import Any


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{n} x [{k}]" for k, n in sorted(counter.items(), key=lambda kv: -kv[1]))


def _quantiles(lat: dict[str, float | None], *keys: str) -> str:
    """``p50 1.2  p95 3.4 ...``: the named figures of ``lat`` in milliseconds."""
    return "  ".join(f"{k} {_ms(lat[k])}" for k in keys)


def _per_process(cpu: dict[str, float]) -> str:
    """``gateway 1.20, delivery 0.40``: CPU seconds by process, without the total."""
    return ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "total")


def print_phase(name: str, f: dict[str, Any]) -> None:
    print(f"\n== {name} ==")
    if f.get("error"):
        print(f"  !! phase failed: {f['error']}")
        return
    if f.get("timed_out"):
        print(
            "  !! INCOMPLETE: the phase hit --timeout (or every socket that could still "
            "deliver was closed); the figures below are what it had by then"
        )
    s = f["sockets"]
    print(
        f"  sockets        {s['connected']} of {s['wanted']} connected, "
        f"{sum(s['refused'].values())} refused, {s['closed_total']} closed by the server"
    )
    if s["refused"]:
        print(f"  !! refused     {_counts(s['refused'])}")
    if s["closed_by_server"]:
        print(f"  !! closed      {_counts(s['closed_by_server'])}")
    if "messages" in f:
        _print_messages(name, f)
    else:
        _print_sockets(name, f)
    if f.get("restarted"):
        print(
            f"  !! restarted   {', '.join(f['restarted'])} restarted during the phase (by "
            "someone else): its CPU figure is the new process's"
        )
    cpu, per = f["server_cpu_s"], f["cpu_per_1k"]
    names = [k for k in cpu if k != "total"]
    print(
        f"  server CPU     {cpu['total']:.2f} s in {f['wall_s']:.1f} s "
        f"({f['server_cpu_share']:.0%} of a core); {per['total']:.3f} s per 1,000 "
        + ("delivered" if "messages" in f else "sockets")
    )
    if len(names) > 1:
        print(
            "                 " + ", ".join(f"{k} {cpu[k]:.2f} s ({per[k]:.3f}/1k)" for k in names)
        )
    if name == "offline":
        print(
            f"  drain CPU      {f['drain_cpu_s']['total']:.2f} s, "
            f"{f['drain_cpu_per_1k']:.3f} s per 1,000 drained"
        )
    print(
        f"  load generator {f['loadgen_cpu_s']:.2f} s CPU ({f['loadgen_cpu_share']:.0%} of a core)"
    )
    print("  RSS            " + ", ".join(f"{k} {v:.0f} MiB" for k, v in f["rss_mib"].items()))


def _print_messages(name: str, f: dict[str, Any]) -> None:
    """A message phase's deliveries, sends, throughput, latencies and receipts."""
    lat = f["latency_ms"]
    m = f["messages"]
    print(
        f"  messages       sent {m['sent']} (of {m['attempted']} attempted), "
        f"delivered {m['delivered']}, lost {m['lost']}, duplicated {m['duplicates']}, "
        f"reordered {m['reordered']}"
    )
    if m["lost"] or m["duplicates"] or m["reordered"] or m["malformed"]:
        print(
            f"  !! LOST {m['lost']} ({m['lost_receiver_closed']} to receivers whose socket "
            f"was closed), DUPLICATED {m['duplicates']}, REORDERED {m['reordered']}, "
            f"malformed {m['malformed']}"
        )
    if m.get("recovered_on_reconnect") is not None:
        print(
            f"  !! of the {m['lost']} lost, {m['recovered_on_reconnect']} came when their "
            "receiver reconnected (stored, but never pushed to the open socket)"
        )
    if m["refused"] or m["unsent_sender_closed"] or m["retried"]:
        print(
            f"  !! sends       refused {_counts(m['refused']) or 0}, retried {m['retried']}, "
            f"unanswered (sender socket closed) {m['unsent_sender_closed']}"
        )
    if name == "offline":
        print(
            f"  sending        {f['send_s']:.2f} s to accept every send; stored by "
            f"{_ms(f['stored_s'])} s; drain {f['drain_s']:.2f} s"
        )
    print(f"  throughput     {f['throughput']:,.0f} msg/s over {f['seconds']:.2f} s")
    print(
        f"  latency        {_quantiles(lat, 'p50', 'p95', 'p99', 'max')} ms  "
        f"({f['latency_from']} -> deliver)"
    )
    acc = _quantiles(f["accept_latency_ms"], "p50", "p95", "p99")
    print(f"  accept         {acc} ms  (send -> accepted)")
    print(
        f"  receipts       {m['messages_receipted']} of {m['sent']} messages receipted back "
        f"to their senders ({m['receipts_acked']} receipt deliveries acked)"
    )
    if m["receipts_missing"]:
        print(
            f"  !! receipts    {m['receipts_missing']} messages got no delivered receipt "
            f"within the grace; {m.get('receipts_recovered_on_reconnect')} of them came "
            "when their sender reconnected"
        )


def _print_sockets(name: str, f: dict[str, Any]) -> None:
    """A socket phase's connects and, for ``idle``, its memory and idle CPU."""
    lat = f["latency_ms"]
    print(
        f"  connects       {f['throughput']:,.0f}/s; all connected after "
        f"{f['time_to_all_connected_s']:.2f} s; connect -> queue-empty "
        f"{_quantiles(lat, 'p50', 'p95', 'p99')} ms"
    )
    print(f"  after hold     {f['connected_after_hold']} still connected")
    if name == "idle":
        print(
            f"  RSS            {f['rss_process']}: "
            f"{f['rss_before_mib'][f['rss_process']]:.0f} MiB before, "
            f"{f['rss_connected_mib'][f['rss_process']]:.0f} MiB connected, "
            f"{f['rss_mib'][f['rss_process']]:.0f} MiB after {f['hold_s']:.0f} s idle: "
            f"{f['rss_per_socket_kib']:.1f} KiB per idle socket"
        )
        print(
            f"  idle CPU       {f['idle_cpu_s']['total']:.2f} s over {f['hold_s']:.1f} s "
            f"({f['idle_cpu_share']:.0%} of a core; "
            f"{f['idle_cpu_ms_per_socket_per_s']:.3f} ms per socket per second): "
            + _per_process(f["idle_cpu_s"])
        )
        print(
            f"  no sockets     {f['no_socket_cpu_s']['total']:.2f} s over "
            f"{f['no_socket_s']:.1f} s before connecting ({f['no_socket_cpu_share']:.0%} "
            "of a core: the noise floor): " + _per_process(f["no_socket_cpu_s"])
        )


def print_summary(result: dict[str, Any]) -> None:
    config = result["config"]
    print(
        f"\n== summary ({config['engine']}"
        + (
            f", a shard map of {config['shard_map']} leased shards"
            if config.get("shard_map")
            else ""
        )
        + f"; {config['cores']} cores, load average "
        f"{config['loadavg_start']:.2f} at the start, "
        f"{config.get('loadavg_end', '-')} at the end: other work on "
        "the machine weighs on every figure) =="
    )
    head = (
        f"{'phase':8} {'items':>6} {'throughput':>16} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'lost':>5} {'dup':>4} {'reord':>5} {'closed':>6} "
        f"{'srv CPU s/1k':>16} {'srv CPU':>8} {'loadgen':>8} {'RSS MiB':>8}"
    )
    print(head)
    for name, f in result["phases"].items():
        if f.get("error"):
            print(f"{name:8} failed: {f['error']}")
            continue
        lat, m = f["latency_ms"], f.get("messages")
        unit = "msg/s" if m else "conn/s"
        items = m["delivered"] if m else f["accepted"]
        rss = f["rss_mib"].get("server", f["rss_mib"].get("gateway", 0.0))
        per = f"{f['cpu_per_1k']['total']:.3f} {'msg' if m else 'sock'}"
        print(
            f"{name:8} {items:>6} {f['throughput']:>10,.0f} {unit:<5} {_ms(lat['p50']):>8} "
            f"{_ms(lat['p95']):>8} {_ms(lat['p99']):>8} "
            f"{(m['lost'] if m else '-'):>5} {(m['duplicates'] if m else '-'):>4} "
            f"{(m['reordered'] if m else '-'):>5} {f['sockets']['closed_total']:>6} "
            f"{per:>16} {f['server_cpu_share']:>8.0%} {f['loadgen_cpu_share']:>8.0%} {rss:>8.0f}"
        )
    print(
        "latency: live send->deliver, offline connect->deliver, idle/storm connect->queue-empty; "
        "CPU %: of one core"
    )
    if config.get("register_refusals"):
        print(
            "\n!! registration refused a code read from the outbox (a new code was asked): "
            + _counts(config["register_refusals"])
        )
    if result["warnings"]:
        print("\n!! warnings:\n" + "\n".join(f"!!   {x}" for x in result["warnings"]))
    if result["failures"]:
        print("\n!! FAILURES:\n" + "\n".join(f"!!   {x}" for x in result["failures"]))


def phase_warnings(figures: dict[str, Any]) -> list[str]:
    """What a phase saw that is no failure of the run but deserves a look."""
    out: list[str] = []
    if figures.get("error"):
        return out
    if figures.get("timed_out"):
        out.append("incomplete (hit --timeout, or every socket that could deliver was closed)")
    sockets = figures.get("sockets", {})
    if sockets.get("closed_total"):
        out.append(f"{sockets['closed_total']} sockets closed by the server")
    if sockets.get("refused"):
        out.append(f"{sum(sockets['refused'].values())} sockets refused")
    m = figures.get("messages") or {}
    if m.get("receipts_missing"):
        out.append(f"{m['receipts_missing']} delivered receipts missing")
    if m.get("refused"):
        out.append(f"{sum(m['refused'].values())} sends refused")
    if figures.get("restarted"):
        out.append(f"restarted during the phase: {', '.join(figures['restarted'])}")
    return out
