"""Message-path benchmark: the yardstick of the gateway's message path, on either engine set.

Starts the servers itself, on a fresh data directory (and, for ``distributed``, a fresh
region on the real Redis, Kafka and Cassandra of ``scripts/deps``), then runs these
phases, each on fresh accounts (``--phase`` picks some, in this order):

live     ``--pairs`` sender/receiver pairs, every socket connected (past ``queue-empty``)
         before the first send; each sender sends ``--messages`` messages of ``--size``
         random bytes to its receiver over its WebSocket, at most ``--window`` sends
         awaiting their answer; receivers ack every delivery, senders ack the ``delivered``
         receipts that flow back. Latency: the sender's write to the receiver's deliver.
         With ``--rate`` the senders offer that many messages per second in all (open
         loop, still within the window) and latency counts from when a message was due:
         the latency at a load the server can carry, not the queue of a saturated one.
offline  the receivers stay away while the senders send everything (every send
         accepted, then every envelope stored); then all receivers connect at once and
         drain. Throughput: from the first connect to the last message; latency: from
         the receiver's connect to the message; order is checked per conversation.
idle     ``--idle`` sockets connect (``--connect-concurrency`` at a time) and stay idle
         for ``--hold`` seconds (a ``ping`` only after 30 s of silence, as the protocol
         requires): server RSS per idle socket, connects per second, idle CPU.
storm    ``--storm`` sockets connect all at once: accepted against refused or closed,
         connects per second, time until every socket is connected.

Each phase prints throughput, latency p50/p95/p99, lost, duplicated and reordered
messages, sockets closed by the server (by close code and reason), the server's CPU
seconds per 1,000 delivered messages (per process: for ``distributed`` the gateway,
delivery worker and presence service, and the Redis, Kafka and Cassandra servers), the
load generator's own CPU beside the server's, and RSS; then one summary table
(``--json``: one JSON object instead). Times are reported, never judged: the exit code
is 1 when a message was lost, duplicated or reordered, a server process died or a phase
could not be set up, 2 when the servers did not start. Every wait is bounded (a phase
by ``--timeout``); what went wrong is counted and printed with ``!!`` (closes by code and
reason, refused connects and sends, missing receipts), and the servers' log is kept
then. After a phase that lost messages (or receipts), the receivers (senders) concerned
reconnect once: what their backlog brings was stored but never pushed to the open socket.

    .venv/bin/python bench/message_path.py                      # embedded, every phase
    .venv/bin/python bench/message_path.py --engine distributed --pairs 5 --messages 20 \\
        --idle 40 --storm 40
    .venv/bin/python bench/message_path.py --phase live,offline --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _servers
from _client import BenchError
from _phases import PHASES
from _report import phase_warnings, print_phase, print_summary
from _run import Run
from _traffic import HEADER


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--engine", choices=("embedded", "distributed"), default="embedded")
    p.add_argument(
        "--phase", default=",".join(PHASES), help="comma-separated, of " + ",".join(PHASES)
    )
    p.add_argument("--pairs", type=int, default=50, help="sender/receiver pairs (live, offline)")
    p.add_argument("--messages", type=int, default=200, help="messages per sender")
    p.add_argument("--size", type=int, default=256, help="random bytes per message")
    p.add_argument("--window", type=int, default=32, help="sends awaiting an answer per sender")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="live/offline: messages per second offered, over all senders (default: as "
        "fast as the window allows). Latency then counts from when each message was due",
    )
    p.add_argument("--idle", type=int, default=2000, help="idle sockets")
    p.add_argument("--hold", type=float, default=10.0, help="seconds the idle sockets stay")
    p.add_argument("--storm", type=int, default=2000, help="sockets connecting at once")
    p.add_argument("--storm-hold", type=float, default=3.0, help="seconds the storm stays")
    p.add_argument(
        "--connect-concurrency", type=int, default=50, help="registrations/connects at once"
    )
    p.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="permessage-deflate offer (deflate: what the SDK's websockets client offers)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="bound of each phase, seconds")
    p.add_argument(
        "--trace-ratio",
        type=float,
        default=None,
        help="trace this share of sends (TIDINGS_TRACE_SAMPLE_RATIO), exporting to a sink "
        "the bench starts (bench/otlp_sink.py) or to --otlp-endpoint (default: no tracing)",
    )
    p.add_argument(
        "--otlp-endpoint", default="", help="with --trace-ratio: a collector instead of the sink"
    )
    p.add_argument(
        "--receipt-grace",
        type=float,
        default=10.0,
        help="seconds to wait for the last delivered receipts after the last message",
    )
    p.add_argument(
        "--shard-map",
        type=int,
        default=0,
        metavar="N",
        help="follow a shard map of N shards, all the bench region's (as under the "
        "operator): the delivery workers then hold shard leases (default: no map)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    phases = [x.strip() for x in args.phase.split(",") if x.strip()]
    unknown = [x for x in phases if x not in PHASES]
    if unknown or not phases:
        p.error(f"--phase: unknown {unknown}; choose from {','.join(PHASES)}")
    args.phases = [x for x in PHASES if x in phases]
    if args.trace_ratio is not None and not 0.0 <= args.trace_ratio <= 1.0:
        p.error("--trace-ratio must be between 0 and 1")
    if args.size < HEADER.size:
        p.error(f"--size must be at least {HEADER.size}")
    return args


async def bench(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    run = Run(args)
    nofile = _servers.raise_nofile_limit()
    run.config.update(
        engine=args.engine,
        phases=args.phases,
        pairs=args.pairs,
        messages=args.messages,
        size=args.size,
        window=args.window,
        rate=args.rate,
        idle=args.idle,
        hold=args.hold,
        storm=args.storm,
        compression=args.compression,
        timeout=args.timeout,
        trace_ratio=args.trace_ratio,
        nofile=nofile,
        loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        cores=os.cpu_count(),
        loadavg_start=round(os.getloadavg()[0], 2),
    )
    warnings: list[str] = []
    result: dict[str, Any] = {
        "config": run.config,
        "phases": {},
        "failures": run.failures,
        "warnings": warnings,
    }
    with tempfile.TemporaryDirectory(prefix="tidings-msgpath-") as tmp:
        if not await run.start_or_fail(Path(tmp)):
            return result, 2
        try:
            for name in args.phases:
                if not run.servers_alive():
                    break
                run.progress(f"phase {name}")
                try:
                    figures = await PHASES[name](run)
                except BenchError as exc:
                    figures = {"error": str(exc)}
                    run.failures.append(f"{name}: {exc}")
                result["phases"][name] = figures
                if not args.json:
                    print_phase(name, figures)
                m = figures.get("messages")
                if m and (m["lost"] or m["duplicates"] or m["reordered"]):
                    run.failures.append(
                        f"{name}: lost {m['lost']}, duplicated {m['duplicates']}, "
                        f"reordered {m['reordered']} of {m['sent']} sent"
                    )
                warnings.extend(f"{name}: {w}" for w in phase_warnings(figures))
                await asyncio.sleep(1.0)  # the last phase's disconnects settle
            run.servers_alive()
            run.config["loadavg_end"] = round(os.getloadavg()[0], 2)
            run.config["register_refusals"] = dict(run.register_refusals)
            if run.register_refusals:
                warnings.append(f"registration refused {run.register_refusals.total()} codes")
        finally:
            await run.close(list(run.conns))
            await run.stop_servers()
            if run.failures or warnings:  # keep the servers' log: the temporary directory goes
                kept = Path(tempfile.gettempdir()) / f"tidings-msgpath-{run.run_tag}.log"
                with contextlib.suppress(OSError):
                    shutil.copyfile(run.config["log"], kept)
                    run.config["log"] = str(kept)
                    warnings.append(f"the servers' log is kept in {kept}")
    return result, 1 if run.failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:
        result, code = asyncio.run(bench(args))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result, code = runner.run(bench(args))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_summary(result)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
