"""``tidings-operator``: the command line of the operator.

    tidings-operator run --namespace tidings          # one namespace (repeatable)
    tidings-operator run --all-namespaces
    tidings-operator run -n tidings --region us-east   # one region's operator
    tidings-operator crds                              # the CRDs, as YAML

Every ``run`` option can come from the environment as ``TIDINGS_OPERATOR_<NAME>``
(``TIDINGS_OPERATOR_NAMESPACES`` comma-separated), so the Helm chart sets them there.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence
from importlib import metadata

DEFAULT_PEERING = "tidings-operator"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"TIDINGS_OPERATOR_{name}", default)


def _version() -> str:
    try:
        return metadata.version("tidings")
    except metadata.PackageNotFoundError:
        return "unknown"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tidings-operator",
        description="Kubernetes operator of Tidings: ChatRegion, MessageShard, PushPool.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="watch and reconcile the custom resources")
    scope = run.add_mutually_exclusive_group()
    env_namespaces = [n for n in _env("NAMESPACES", "").split(",") if n.strip()]
    scope.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        action="append",
        help="a namespace to watch (repeatable; glob patterns allowed)",
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        default=_env("ALL_NAMESPACES", "").lower() == "true",
        help="watch every namespace (needs cluster-wide RBAC)",
    )
    peering = run.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        default=_env("PEERING", DEFAULT_PEERING),
        help="kopf peering object: of several operators in a namespace one acts "
        f"(default {DEFAULT_PEERING}; its KopfPeering must exist)",
    )
    peering.add_argument(
        "--standalone",
        action="store_true",
        default=_env("STANDALONE", "").lower() == "true",
        help="no peering: for one operator alone (development, tests)",
    )
    run.add_argument(
        "--region",
        dest="regions",
        action="append",
        help="run only this ChatRegion (repeatable; default: every region watched). Other "
        "regions in the namespaces are peers: their heartbeats are read, their shards may "
        "be taken over. One operator per region, as across clusters.",
    )
    run.add_argument(
        "--heartbeat-interval",
        type=float,
        default=float(_env("HEARTBEAT_INTERVAL", "5")),
        help="seconds between heartbeat Lease renewals and peer health checks",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=int(_env("PRIORITY", "0")),
        help="peering priority: of the operators in a peering the highest acts and the "
        "others pause (equal priorities pause all of them)",
    )
    run.add_argument("--health-port", type=int, default=int(_env("HEALTH_PORT", "8080")))
    run.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "9090")))
    run.add_argument(
        "--reconcile-interval",
        type=float,
        default=float(_env("RECONCILE_INTERVAL", "30")),
        help="seconds between level-based resyncs of each resource (drift repair)",
    )
    run.add_argument(
        "--topic-check-interval",
        type=float,
        default=float(_env("TOPIC_CHECK_INTERVAL", "5")),
        help="seconds between listings of each region's Kafka topics: a deleted topic is "
        "recreated within about this long, not only at the next resync",
    )
    run.add_argument(
        "--keyspace-check-interval",
        type=float,
        default=float(_env("KEYSPACE_CHECK_INTERVAL", "10")),
        help="seconds between look-ups of each region's Cassandra keyspace (one "
        "connection each): a dropped keyspace is recreated, with its tables, within "
        "about this long, not only at the next resync",
    )
    run.add_argument(
        "--shard-interval",
        type=float,
        default=float(_env("SHARD_INTERVAL", "60")),
        help="seconds between refreshes of each MessageShard's status and lag metrics "
        "(owner, epoch, consumer lag, oldest undelivered age), read from Kafka",
    )
    run.add_argument(
        "--max-concurrent-reconciles",
        type=int,
        default=int(_env("MAX_CONCURRENT_RECONCILES", "8")),
        help="reconciles of one kind running at once (ChatRegions, MessageShards and "
        "PushPools each have this many); the rest wait their turn",
    )
    run.add_argument(
        "--watch-timeout",
        type=int,
        default=int(_env("WATCH_TIMEOUT", "300")),
        help="server-side timeout of each watch request, seconds",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=_env("LOG_LEVEL", "info"),
    )
    run.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    run.set_defaults(env_namespaces=env_namespaces)

    sub.add_parser("crds", help="print the CustomResourceDefinitions as YAML")
    return top


def _run(args: argparse.Namespace) -> None:
    if args.kubeconfig:
        # Before kopf and kubernetes are imported: the client library reads $KUBECONFIG
        # once, at import, and kopf's login goes through it.
        args.kubeconfig = os.path.abspath(args.kubeconfig)
        os.environ["KUBECONFIG"] = args.kubeconfig
    import kopf
    from prometheus_client import start_http_server

    from tidings_operator.external_state import KafkaCassandra
    from tidings_operator.handlers import Options, register
    from tidings_operator.logs import quiet_handler_chatter

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    quiet_handler_chatter()
    namespaces = args.namespaces or args.env_namespaces
    regions = args.regions or [r.strip() for r in _env("REGIONS", "").split(",") if r.strip()]
    if not namespaces and not args.all_namespaces:
        sys.exit(
            "tidings-operator: say which namespaces to watch: --namespace NAME (repeatable) "
            "or --all-namespaces"
        )
    registry = kopf.OperatorRegistry()
    register(
        registry,
        Options(
            kubeconfig=args.kubeconfig,
            reconcile_interval=args.reconcile_interval,
            watch_timeout=args.watch_timeout,
            max_concurrent_reconciles=args.max_concurrent_reconciles,
            heartbeat_interval=args.heartbeat_interval,
            topic_check_interval=args.topic_check_interval,
            keyspace_check_interval=args.keyspace_check_interval,
            shard_interval=args.shard_interval,
            regions=frozenset(regions) if regions else None,
            holder=f"{socket.gethostname()}/{os.getpid()}",
        ),
        # A lag read is shared by a region's shards, never kept past their refresh.
        KafkaCassandra(lag_ttl=min(10.0, args.shard_interval)),
    )
    start_http_server(args.metrics_port)
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=args.all_namespaces,
            namespaces=() if args.all_namespaces else namespaces,
            standalone=args.standalone,
            peering_name=None if args.standalone else args.peering,
            priority=args.priority,
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "crds":
        from tidings_operator.crdgen import rendered

        sys.stdout.write("---\n".join(text for _, text in sorted(rendered().items())))
        return
    _run(args)


if __name__ == "__main__":
    main()
