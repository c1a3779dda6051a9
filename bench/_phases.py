"""The four phases, each on fresh accounts: ``live`` and ``offline`` send messages between
sender/receiver pairs, ``idle`` and ``storm`` only connect sockets. Each returns its
figures (see ``_figures``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _client import Account, Conn, Sink
from _figures import message_figures, per_1k, socket_figures, sockets
from _meter import Meter, Sample
from _run import Run
from _traffic import Traffic, send_messages

# ---- live and offline: messages between pairs -----------------------------------------


@dataclass
class Pairs:
    """A message phase's accounts (sender ``i`` writes to receiver ``i``), their sockets
    (None: not connected) and its bookkeeping."""

    senders: list[Account]
    receivers: list[Account]
    traffic: Traffic
    deadline: float
    sconns: list[Conn | None] = field(default_factory=list)
    rconns: list[Conn | None] = field(default_factory=list)


async def _pairs(run: Run, traffic: Traffic) -> Pairs:
    accounts = await run.register(2 * run.args.pairs)
    split = run.args.pairs
    deadline = time.monotonic() + run.args.timeout
    return Pairs(accounts[:split], accounts[split:], traffic, deadline)


async def _send_all(run: Run, p: Pairs, receivers_connected: bool) -> bool:
    """Every sender (and, if ``receivers_connected``, whose receiver is connected) sends
    its messages; True if the deadline cut the sending short."""
    args, traffic = run.args, p.traffic
    rate = args.rate / len(p.senders) if args.rate else None
    jobs = [
        send_messages(s, i, r.user_id, args.messages, args.window, args.size, traffic, rate)
        for i, (s, r) in enumerate(zip(p.sconns, p.receivers, strict=True))
        if s is not None and (not receivers_connected or p.rconns[i] is not None)
    ]
    timed_out = await run.within(asyncio.gather(*jobs), p.deadline)
    traffic.senders_done()
    return timed_out


async def _all_delivered(run: Run, p: Pairs) -> bool:
    """Wait for every accepted message; True if it came."""
    return await run.wait(p.traffic.all_in, p.deadline, lambda: p.traffic.hopeless(p.rconns))


async def _reconnect(
    run: Run, stale: Sequence[Conn | None], accounts: Sequence[Account]
) -> Traffic:
    """Close ``stale`` and connect ``accounts`` once more: what their backlogs bring before
    ``queue-empty``."""
    await run.close(stale)
    probe = Traffic()
    deadline = time.monotonic() + min(30.0, run.args.timeout)
    conns = await run.open_many(accounts, probe, deadline, run.args.connect_concurrency)
    await run.close(conns)
    return probe


async def recheck(run: Run, p: Pairs) -> int | None:
    """After a phase that lost messages: reconnect each receiver still missing some and
    count the lost messages its backlog brings before ``queue-empty``. Those were
    stored in the inbox but never pushed to the open socket. None: nothing was lost."""
    lost = set(p.traffic.accepted) - set(p.traffic.got)
    if not lost:
        return None
    pairs = sorted({sender for sender, _ in lost if sender < len(p.receivers)})
    run.progress(f"{len(lost)} messages lost: reconnecting {len(pairs)} receivers to look")
    probe = await _reconnect(run, [p.rconns[i] for i in pairs], [p.receivers[i] for i in pairs])
    return len(lost & set(probe.got))


async def recheck_receipts(run: Run, p: Pairs) -> int | None:
    """Like ``recheck``, for ``delivered`` receipts that never reached an open sender
    socket: reconnect those senders and count the missing receipts their backlog
    brings. None: no receipt was missing."""
    missing = set(p.traffic.unreceipted or ())
    if not missing:
        return None
    by_id = {sid: sender for (sender, _), (_, sid) in p.traffic.accepted.items()}
    pairs = sorted({by_id[sid] for sid in missing if by_id.get(sid, -1) < len(p.senders)})
    run.progress(f"{len(missing)} receipts missing: reconnecting {len(pairs)} senders")
    probe = await _reconnect(run, [p.sconns[i] for i in pairs], [p.senders[i] for i in pairs])
    return len(missing & probe.receipted)


async def _finish(
    run: Run,
    p: Pairs,
    s0: Sample,
    span: float,
    timed_out: bool,
    latency_from: str,
    extra: Callable[[], dict[str, Any]] = dict,
) -> dict[str, Any]:
    """The end of a message phase: the last receipts, the figures, a reconnect to look for
    what was lost, and the sockets closed. ``extra()`` adds the phase's own figures."""
    args, traffic = run.args, p.traffic
    await run.wait(traffic.receipts_in, min(p.deadline, time.monotonic() + args.receipt_grace))
    s1 = run.meter.sample()
    rss = run.meter.rss()
    out = message_figures(traffic, s0, s1, span, p.rconns, timed_out)
    out["messages"]["recovered_on_reconnect"] = await recheck(run, p)
    out["messages"]["receipts_recovered_on_reconnect"] = await recheck_receipts(run, p)
    conns = [*p.sconns, *p.rconns]
    out.update(
        pairs=args.pairs,
        sockets=sockets(len(conns), sum(c is not None for c in conns), traffic),
        latency_from=latency_from,
        **extra(),
        rss_mib=rss,
    )
    await run.close(conns)
    return out


async def live(run: Run) -> dict[str, Any]:
    args = run.args
    p = await _pairs(run, Traffic())
    accounts = [*p.senders, *p.receivers]
    conns = await run.open_many(accounts, p.traffic, p.deadline, args.connect_concurrency)
    p.sconns, p.rconns = conns[: args.pairs], conns[args.pairs :]
    connected = sum(c is not None for c in conns)
    run.progress(f"live: {connected} of {len(accounts)} sockets connected; sending")
    s0 = run.meter.sample()
    timed_out = await _send_all(run, p, receivers_connected=True)
    timed_out |= not await _all_delivered(run, p)
    end = p.traffic.last_at or time.perf_counter()
    run.progress(f"live: {len(p.traffic.got)} of {len(p.traffic.accepted)} delivered; receipts")
    return await _finish(run, p, s0, end - s0.wall, timed_out, "send")


async def _stored_after(run: Run, p: Pairs, writes0: float | None, s0: Sample) -> float | None:
    """Seconds from ``s0`` until the delivery worker stored every accepted envelope (None:
    not within the deadline, or its counter is unreadable)."""
    if writes0 is None:
        return None
    while time.monotonic() < p.deadline and run.servers_alive():
        now_writes = await run.inbox_writes()
        if now_writes is not None and now_writes - writes0 >= len(p.traffic.accepted):
            return round(time.perf_counter() - s0.wall, 3)
        await asyncio.sleep(0.1)
    return None


async def offline(run: Run) -> dict[str, Any]:
    args = run.args
    p = await _pairs(run, Traffic(latency_from_connect=True))
    traffic = p.traffic
    p.sconns = await run.open_many(p.senders, traffic, p.deadline, args.connect_concurrency)
    writes0 = await run.inbox_writes()
    s0 = run.meter.sample()
    timed_out = await _send_all(run, p, receivers_connected=False)
    sent_s = time.perf_counter() - s0.wall
    run.progress(f"offline: {len(traffic.accepted)} sends accepted in {sent_s:.1f}s")
    stored_s = await _stored_after(run, p, writes0, s0)
    run.progress(f"offline: stored after {stored_s}s; {len(p.receivers)} receivers connect")
    s_drain = run.meter.sample()
    p.rconns = await run.open_many(p.receivers, traffic, p.deadline, None)
    timed_out |= not await _all_delivered(run, p)
    end = traffic.last_at or time.perf_counter()
    s_drained = run.meter.sample()
    run.progress(f"offline: {len(traffic.got)} of {len(traffic.accepted)} drained; receipts")

    def drain_figures() -> dict[str, Any]:
        drain = Meter.delta(s_drain, s_drained)
        return {
            "send_s": round(sent_s, 3),
            "stored_s": stored_s,
            "drain_s": round(end - s_drain.wall, 3),
            "drain_cpu_s": drain["server_cpu_s"],
            "drain_cpu_per_1k": per_1k(drain["server_cpu_s"], len(traffic.got))["total"],
        }

    return await _finish(run, p, s0, end - s_drain.wall, timed_out, "connect", drain_figures)


# ---- idle and storm: sockets only -----------------------------------------------------


@dataclass
class Crowd:
    """Sockets a socket phase opened (None: refused) and when it opened them."""

    sink: Sink
    wanted: int
    conns: list[Conn | None]
    s0: Sample
    connect_s: float
    timed_out: bool
    deadline: float

    @property
    def connected(self) -> list[Conn]:
        return [c for c in self.conns if c is not None]

    def figures(self, s1: Sample) -> dict[str, Any]:
        return socket_figures(
            self.sink, self.s0, s1, self.wanted, self.connected, self.connect_s, self.timed_out
        )


async def _connect_crowd(
    run: Run, name: str, accounts: Sequence[Account], sink: Sink, limit: int | None
) -> Crowd:
    """A socket per account (``limit`` at a time, or all at once), within ``--timeout``."""
    deadline = time.monotonic() + run.args.timeout
    run.progress(f"{name}: {len(accounts)} sockets connecting")
    s0 = run.meter.sample()
    conns = await run.open_many(accounts, sink, deadline, limit)
    connect_s = time.perf_counter() - s0.wall
    crowd = Crowd(sink, len(accounts), conns, s0, connect_s, time.monotonic() >= deadline, deadline)
    n = len(crowd.connected)
    run.progress(f"{name}: {n} of {len(accounts)} connected in {connect_s:.1f}s")
    return crowd


async def _hold(seconds: float, deadline: float) -> None:
    await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))


async def idle(run: Run) -> dict[str, Any]:
    args, meter = run.args, run.meter
    accounts = await run.register(args.idle)
    await asyncio.sleep(1.0)  # let the registrations' work settle before measuring
    b0 = meter.sample()  # the noise floor: the servers with no socket at all
    await asyncio.sleep(min(3.0, args.hold))
    base = Meter.delta(b0, meter.sample())
    rss0 = meter.rss()
    crowd = await _connect_crowd(run, "idle", accounts, Sink(), args.connect_concurrency)
    connected = crowd.connected
    s_hold = meter.sample()
    rss1 = meter.rss()
    await _hold(args.hold, crowd.deadline)
    s1 = meter.sample()
    rss2 = meter.rss()
    still = sum(not c.closed for c in connected)
    out = crowd.figures(s1)
    hold = Meter.delta(s_hold, s1)
    n = max(1, still)
    gw = "server" if "server" in rss0 else "gateway"
    out.update(
        connected_after_hold=still,
        hold_s=hold["wall_s"],
        idle_cpu_s=hold["server_cpu_s"],
        idle_cpu_share=hold["server_cpu_share"],
        no_socket_cpu_s=base["server_cpu_s"],
        no_socket_cpu_share=base["server_cpu_share"],
        no_socket_s=base["wall_s"],
        idle_cpu_ms_per_socket_per_s=round(
            hold["server_cpu_s"]["total"] / n / hold["wall_s"] * 1000, 4
        ),
        rss_before_mib=rss0,
        rss_connected_mib=rss1,
        rss_mib=rss2,
        rss_per_socket_kib=round((rss2[gw] - rss0[gw]) * 1024 / n, 1),
        rss_per_socket_kib_connected=round(
            (rss1[gw] - rss0[gw]) * 1024 / max(1, len(connected)), 1
        ),
        rss_process=gw,
    )
    await run.close(crowd.conns)
    return out


async def storm(run: Run) -> dict[str, Any]:
    args = run.args
    accounts = await run.register(args.storm)
    await asyncio.sleep(1.0)
    crowd = await _connect_crowd(run, "storm", accounts, Sink(), None)
    await _hold(args.storm_hold, crowd.deadline)
    s1 = run.meter.sample()
    out = crowd.figures(s1)
    out.update(
        connected_after_hold=sum(not c.closed for c in crowd.connected),
        hold_s=args.storm_hold,
        rss_mib=run.meter.rss(),
    )
    await run.close(crowd.conns)
    return out


PHASES: dict[str, Callable[[Run], Awaitable[dict[str, Any]]]] = {
    "live": live,
    "offline": offline,
    "idle": idle,
    "storm": storm,
}
"""Every phase, in the order a run takes them."""
