"""The load generator against the multi-process deployment on the real servers.

Starts Kafka, Cassandra, Redis and S3 with ``scripts/deps up``, then one process per
service (``--gateways`` gateways, ``--delivery`` delivery workers, presence and
analytics) on the distributed engines in a region of its own, runs
``tidings bench load`` with its simulated devices spread over the gateways, prints the
figures and the processes' memory, and stops the processes (the servers stay up;
``scripts/deps down all`` stops them). Asserts nothing.

    .venv/bin/python bench/distributed.py --clients 20 --rate 50 --duration 20
    .venv/bin/python bench/distributed.py --no-e2ee --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from pathlib import Path

import _servers
from _servers import TIDINGS, rss_mib


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--delivery", type=int, default=2)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--no-e2ee", action="store_true")
    args = parser.parse_args()

    region = f"bench{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        **_servers.distributed_settings(_servers.deps_env()),
        TIDINGS_ENGINE="distributed",
        TIDINGS_REGION=region,
        TIDINGS_LOG_LEVEL="warning",
        **_servers.SIGNUP_LIMITS,
    )
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        data, log = Path(tmp) / "data", Path(tmp) / "tidings.log"
        services = ["gateway"] * args.gateways + ["delivery"] * args.delivery
        services += ["presence", "analytics"]
        running: list[_servers.Server] = []
        try:
            for service in services:
                running.append(await _servers.start(service, ["serve", service], data, env, log))
            gateways = [server.url for server in running if server.name == "gateway"]
            print(f"region {region}: " + ", ".join(f"{s.name} {s.url}" for s in running))
            cmd = [TIDINGS, "bench", "load", "--data-dir", str(data)]
            for url in gateways:
                cmd += ["--server", url]
            cmd += ["--clients", str(args.clients), "--rate", str(args.rate)]
            cmd += ["--duration", str(args.duration), "--groups", str(args.groups), "--seed", "1"]
            if args.no_e2ee:
                cmd.append("--no-e2ee")
            bench = await asyncio.create_subprocess_exec(*cmd)
            await bench.wait()
            for server in running:
                print(f"  {server.name:9} {server.url}  RSS {rss_mib(server.pid) or 0:.0f} MiB")
        finally:
            await _servers.stop(running)


if __name__ == "__main__":
    asyncio.run(main())
