"""The load generator against the multi-process deployment on the real servers.

Starts Kafka, Cassandra, Redis and S3 with ``scripts/deps up all``, then one process per
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
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / "scripts" / "deps"
TIDINGS = str(Path(sys.executable).with_name("tidings"))
UP = re.compile(r"is up: (http://\S+)")


def server_env() -> dict[str, str]:
    subprocess.run([str(DEPS), "up", "all"], cwd=ROOT, check=True)
    out = subprocess.run(
        [str(DEPS), "env"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    found = dict(re.findall(r"^export ([A-Z0-9_]+)='([^']*)'$", out, re.MULTILINE))
    keep = (
        "TIDINGS_REDIS_URL",
        "TIDINGS_KAFKA_BOOTSTRAP",
        "TIDINGS_CASSANDRA_CONTACT_POINTS",
        "TIDINGS_CASSANDRA_PORT",
        "TIDINGS_CASSANDRA_LOCAL_DC",
        "TIDINGS_S3_ENDPOINT",
        "TIDINGS_S3_BUCKET",
        "TIDINGS_S3_ACCESS_KEY",
        "TIDINGS_S3_SECRET_KEY",
    )
    return {k: found[k] for k in keep}


async def start(service: str, data: Path, env: dict[str, str], log: Path) -> tuple[Any, str]:
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            TIDINGS,
            "serve",
            service,
            "--port",
            "0",
            "--data-dir",
            str(data),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env,
        )
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise SystemExit(f"tidings serve {service} exited; see {log}")
        if match := UP.search(line):
            return proc, match.group(1)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
        **server_env(),
        TIDINGS_ENGINE="distributed",
        TIDINGS_REGION=region,
        TIDINGS_LOG_LEVEL="warning",
    )
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        data, log = Path(tmp) / "data", Path(tmp) / "tidings.log"
        services = ["gateway"] * args.gateways + ["delivery"] * args.delivery
        services += ["presence", "analytics"]
        running = [await start(s, data, env, log) for s in services]
        gateways = [url for (_, url), s in zip(running, services, strict=True) if s == "gateway"]
        print(
            f"region {region}: "
            + ", ".join(f"{s} {u}" for (_, u), s in zip(running, services, strict=True))
        )
        try:
            cmd = [TIDINGS, "bench", "load", "--data-dir", str(data)]
            for url in gateways:
                cmd += ["--server", url]
            cmd += ["--clients", str(args.clients), "--rate", str(args.rate)]
            cmd += ["--duration", str(args.duration), "--groups", str(args.groups), "--seed", "1"]
            if args.no_e2ee:
                cmd.append("--no-e2ee")
            bench = await asyncio.create_subprocess_exec(*cmd)
            await bench.wait()
            for (proc, url), service in zip(running, services, strict=True):
                print(f"  {service:9} {url}  RSS {rss_mib(proc.pid):.0f} MiB")
        finally:
            for proc, _ in running:
                proc.terminate()
            for proc, _ in running:
                await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
