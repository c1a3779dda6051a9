"""``tidings bench load``: a load generator on the real SDK.

N simulated devices (each its own account, with its own local store) register against a
dev-mode server (codes read from its ``otp-outbox.jsonl``), then send on an open-loop
schedule: message k leaves at ``k / rate`` seconds, from a random sender to a random
other user or, with ``--groups``, to one of G groups of random members. The run is
bounded: ``rate * duration`` messages, then a drain of at most ``--drain-timeout``.

Figures are printed, never asserted: messages sent and delivered, throughput, send ->
recipient-decrypt latency percentiles, errors, lost copies and app-level duplicates.

The run itself lives in :mod:`tidings.client.loadrun`, the devices in
:mod:`tidings.client.loadsim`, the counting and printing in :mod:`tidings.client.loadreport`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tidings.client.http import ApiError
from tidings.client.loadreport import table
from tidings.client.loadrun import LoadConfig, LoadRun
from tidings.client.loadsim import LoadError

SEND_RATE_PER_DEVICE = 20.0
"""The server's send limit per device (``RateLimits.send_rate``); above it, sends get 429."""

DEFAULT_SERVER = "http://127.0.0.1:8080"


def _positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def _config(args: argparse.Namespace) -> LoadConfig:
    if args.clients < 2:
        raise LoadError("--clients must be at least 2 (senders need someone to send to)")
    if args.groups and not 2 <= args.group_size <= 256:
        raise LoadError("--group-size must be within [2, 256]")
    if args.dev_outbox is not None:
        outbox = args.dev_outbox
    else:
        data_dir = args.data_dir or Path(os.environ.get("TIDINGS_DATA_DIR", ".tidings-data"))
        outbox = data_dir / "otp-outbox.jsonl"
    return LoadConfig(
        servers=tuple(args.server or [DEFAULT_SERVER]),
        clients=args.clients,
        rate=args.rate,
        duration=args.duration,
        groups=args.groups,
        group_size=min(args.group_size, args.clients),
        group_share=args.group_share if args.groups else 0.0,
        e2ee=args.e2ee,
        outbox=outbox,
        drain_timeout=args.drain_timeout,
        seed=args.seed if args.seed is not None else secrets.randbelow(2**31),
    )


def _store_root(args: argparse.Namespace) -> Path | None:
    """Where the devices' local stores go: ``--store-dir``, else RAM when there is some.

    N devices share one event loop here, so N phones' worth of SQLite fsyncs on one disk
    would measure that disk; a tmpfs keeps the SDK's real store without that cost.
    """
    if args.store_dir is not None:
        root: Path = args.store_dir
        root.mkdir(parents=True, exist_ok=True)
        return root
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def run(args: argparse.Namespace) -> int:
    """Run ``bench load``; 0 once figures are printed (whatever they are), 1 if it cannot."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = _config(args)
        per_device = config.rate / config.clients
        if per_device > SEND_RATE_PER_DEVICE * 0.9:
            print(
                f"warning: {per_device:.1f} msg/s per device is near or above the server's "
                f"{SEND_RATE_PER_DEVICE:g}/s send limit; expect rate_limited errors",
                file=sys.stderr,
            )
        with tempfile.TemporaryDirectory(prefix="tidings-load-", dir=_store_root(args)) as work:
            result = asyncio.run(LoadRun(config, Path(work)).run())
    except (LoadError, ApiError) as exc:
        print(f"bench load: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench``; it sets ``run=callable(args) -> int``."""
    bench = sub.add_parser("bench", help="measure a running server")
    kinds = bench.add_subparsers(dest="bench", required=True)
    load = kinds.add_parser(
        "load",
        help="drive N simulated devices on an open-loop schedule and print figures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument(
        "--server",
        action="append",
        help=f"gateway base URL (default {DEFAULT_SERVER}); repeat it to spread the "
        "simulated devices over several gateways",
    )
    load.add_argument("--clients", type=_positive(int), default=10, help="simulated devices")
    load.add_argument("--rate", type=_positive(float), default=20.0, help="total msgs/s")
    load.add_argument("--duration", type=_positive(float), default=10.0, help="seconds")
    load.add_argument("--groups", type=_count, default=0, help="groups of random members")
    load.add_argument("--group-size", type=int, default=5, help="members per group")
    load.add_argument(
        "--group-share", type=_share, default=0.25, help="share of messages sent to groups"
    )
    load.add_argument(
        "--no-e2ee",
        dest="e2ee",
        action="store_false",
        help="skip the SDK and its crypto: plain bodies over the same API (the server alone)",
    )
    where = load.add_mutually_exclusive_group()
    where.add_argument("--dev-outbox", type=Path, help="the dev-mode server's otp-outbox.jsonl")
    where.add_argument("--data-dir", type=Path, help="the dev-mode server's data directory")
    load.add_argument(
        "--drain-timeout",
        type=_positive(float),
        default=15.0,
        help="seconds to wait for outstanding deliveries after the last send",
    )
    load.add_argument(
        "--store-dir",
        type=Path,
        help="parent of the devices' temporary local stores (default /dev/shm, else TMPDIR)",
    )
    load.add_argument("--seed", type=int, help="schedule seed (random by default)")
    load.add_argument("--json", action="store_true", help="print the figures as JSON")
    load.set_defaults(run=run, log_level=logging.WARNING)  # figures are the output
