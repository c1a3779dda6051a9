"""``kubectl tidings``: the regions at a glance and shard moves by hand, as a kubectl
plugin (``kubectl-tidings``).

    kubectl tidings status [-n NS] [--prometheus URL]     one screen per region
    kubectl tidings shards [-n NS]                        where every shard is served
    kubectl tidings failover us-east --to eu-west [-n NS] fence us-east, move its shards
    kubectl tidings failback us-east [-n NS]              bring us-east's shards home

Every move bumps the shard's epoch in the same conditional update that changes its
owner (see ``failover``); ``--dry-run`` prints the plan and changes nothing. A shard that
changed while the plan was made is planned again (up to three rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import config as kconfig

from tidings_operator.failover import Move, MoveRefused, ShardView, plan_failback, plan_failover
from tidings_operator.kube import ApiError, Kube
from tidings_operator.names import CHAT_REGION, MESSAGE_SHARD, PUSH_POOL
from tidings_operator.prometheus_api import read_prometheus
from tidings_operator.shard_merge import as_published
from tidings_operator.shard_moves import move_shards, published_owners, shard_views
from tidings_operator.status_screen import status_screen

ROUNDS = 3

Planner = Callable[[list[str], list[ShardView]], list[Move]]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl tidings", description="See Tidings regions and move their MessageShards."
    )
    top.add_argument("-n", "--namespace", help="namespace of the regions (default: context's)")
    top.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    sub = top.add_subparsers(dest="command", required=True)
    status = sub.add_parser(
        "status",
        help="per region: health, peers, shards owned and home, epochs, lag, sockets, alerts",
    )
    status.add_argument(
        "--prometheus",
        metavar="URL",
        help="a Prometheus scraping the region (open sockets and the active alerts)",
    )
    sub.add_parser("shards", help="list the shards: home, owner, epoch, lag")
    failover = sub.add_parser("failover", help="fence REGION and move its shards to a peer")
    failover.add_argument("region")
    failover.add_argument("--to", required=True, help="the region taking the shards")
    failover.add_argument("--dry-run", action="store_true", help="print the plan only")
    failback = sub.add_parser("failback", help="move REGION's own shards back to it")
    failback.add_argument("region")
    failback.add_argument("--dry-run", action="store_true", help="print the plan only")
    return top


def _context_namespace(kubeconfig: str | None) -> str:
    try:
        _, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)
    except (kconfig.ConfigException, FileNotFoundError, TypeError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


def shards_table(shards: Sequence[Mapping[str, Any]]) -> str:
    rows = [("NAME", "HOME", "OWNER", "EPOCH", "SLOTS", "LAG")]
    for obj in sorted(shards, key=lambda o: str(o["metadata"]["name"])):
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        rows.append(
            (
                str(obj["metadata"]["name"]),
                str(spec.get("region", "")),
                str(spec.get("owner", "")),
                str(spec.get("epoch", "")),
                f"{spec.get('firstSlot')}-{spec.get('lastSlot')}",
                str(status.get("consumerLag", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def _move(kube: Kube, namespace: str, plan: Planner, dry_run: bool) -> int:
    for attempt in range(1, ROUNDS + 1):
        bodies = await kube.list(CHAT_REGION, namespace)
        here = [str(r["metadata"]["name"]) for r in bodies]
        # Peers in clusters of their own count as regions, and the shard maps say who
        # serves a shard a peer took over (its copy is in the peer's cluster).
        regions = sorted(
            {*here, *(p["name"] for r in bodies for p in r["spec"].get("peers") or [])}
        )
        shards = as_published(
            shard_views(await kube.list(MESSAGE_SHARD, namespace)),
            await published_owners(kube, namespace, here),
        )
        try:
            moves = plan(regions, shards)
        except MoveRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if not moves:
            print("nothing to move")
            return 0
        if dry_run:
            for move in moves:
                print(f"would move {move.describe()}")
            return 0
        result = await move_shards(kube, namespace, moves)
        for move in result.moved:
            print(f"moved {move.describe()}")
            for side in (move.from_owner, move.to_owner):
                if (region := await kube.get(CHAT_REGION, namespace, side)) is not None:
                    await _event(kube, region, move)
        if not result.refused:
            return 0
        for move, why in result.refused:
            print(f"changed meanwhile, planning again: {move.shard}: {why}", file=sys.stderr)
        if attempt == ROUNDS:
            print(
                f"error: {len(result.refused)} shards kept changing; check "
                f"`kubectl -n {namespace} get messageshards` and run again",
                file=sys.stderr,
            )
            return 1
    return 1


async def _event(kube: Kube, region: Mapping[str, Any], move: Move) -> None:
    try:
        await kube.event(region, reason="ShardMoved", message=f"by hand: {move.describe()}")
    except ApiError as exc:  # the move is done; the Event is only a record of it
        print(f"warning: event not recorded: {exc}", file=sys.stderr)


async def _status(kube: Kube, namespace: str, prometheus_url: str | None) -> int:
    regions = await kube.list(CHAT_REGION, namespace)
    shards = await kube.list(MESSAGE_SHARD, namespace)
    pools = await kube.list(PUSH_POOL, namespace)
    prometheus = None
    if prometheus_url:
        names = [str(r["metadata"]["name"]) for r in regions]
        prometheus = await read_prometheus(prometheus_url, namespace, names)
    now = datetime.now(UTC)
    print(status_screen(namespace, regions, shards, pools, prometheus, now))
    # The screen is shown either way; a Prometheus asked for and not answering fails
    # the command, so a script notices that the alerts were not read.
    return 1 if prometheus is not None and prometheus.error else 0


async def run(args: argparse.Namespace) -> int:
    namespace = args.namespace or _context_namespace(args.kubeconfig)
    kube = Kube.from_kubeconfig(args.kubeconfig)
    try:
        if args.command == "status":
            return await _status(kube, namespace, args.prometheus)
        if args.command == "shards":
            print(shards_table(await kube.list(MESSAGE_SHARD, namespace)))
            return 0
        if args.command == "failover":
            region, to = args.region, args.to
            return await _move(
                kube,
                namespace,
                lambda regions, shards: plan_failover(region, to, regions, shards),
                args.dry_run,
            )
        region = args.region
        return await _move(
            kube,
            namespace,
            lambda regions, shards: plan_failback(region, regions, shards),
            args.dry_run,
        )
    except ApiError as exc:
        print(f"error: the API server refused: {exc}", file=sys.stderr)
        return 1
    finally:
        await kube.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        code = asyncio.run(run(args))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``kubectl tidings shards | head``): as other command-line
        # tools do, stop quietly. stdout is pointed at /dev/null so the interpreter's
        # own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, what a shell reports for a command killed by it
    sys.exit(code)


if __name__ == "__main__":
    main()
