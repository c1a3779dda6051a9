"""What the benchmarks share: starting ``tidings`` processes and the real servers, and
reading a process's CPU time and memory from ``/proc``.

``bench/message_path.py`` and ``bench/distributed.py`` import it (run them as scripts:
their directory is then on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / "scripts" / "deps"
TIDINGS = str(Path(sys.executable).with_name("tidings"))
UP = re.compile(r"is up: (http://\S+)")
OPS = re.compile(r"^\s*metrics\s+(http://\S+)/metrics\s*$")
"""The start-up line naming the operations port (``/metrics``)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")

SIGNUP_LIMITS = {
    "TIDINGS_RATE_LIMITS": json.dumps(
        {
            "otp_address_burst": 1_000_000,
            "register_address_burst": 1_000_000,
            "otp_block_burst": 1_000_000,
        }
    )
}
"""A benchmark registers thousands of accounts from one address and one block of
numbers, which the per-address and per-block limits of a real deployment refuse."""

DEPS_SERVICES = ("redis", "kafka", "cassandra", "s3")
"""What the distributed engines need (``scripts/deps up all`` would add the Kubernetes
control plane, which no benchmark of the message path uses)."""

DEPS_ENV_KEYS = (
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


class ServerError(Exception):
    """A server did not start (the message says why, with its log's tail)."""


def raise_nofile_limit() -> int:
    """Lift this process's open-files soft limit to the hard limit (children started
    afterwards inherit it), so thousands of sockets fit. Returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- the real servers (scripts/deps) ----------------------------------------------------


def deps_env(services: Sequence[str] = DEPS_SERVICES, timeout: float = 900.0) -> dict[str, str]:
    """Start ``services`` with ``scripts/deps up`` (idempotent; concurrent callers take
    turns on its lock) and return every variable ``scripts/deps env`` exports."""
    up = subprocess.run(
        [str(DEPS), "up", *services], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if up.returncode != 0:
        raise ServerError(
            f"scripts/deps up {' '.join(services)} failed (exit {up.returncode}):\n"
            f"{up.stdout[-2000:]}{up.stderr[-3000:]}"
        )
    out = subprocess.run(
        [str(DEPS), "env"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return exports(out)


def exports(text: str) -> dict[str, str]:
    """The ``export NAME='value'`` lines of ``scripts/deps env`` (or ``regions env``)."""
    return dict(re.findall(r"^export ([A-Z0-9_]+)='([^']*)'$", text, re.MULTILINE))


def distributed_settings(found: dict[str, str]) -> dict[str, str]:
    """The ``TIDINGS_*`` settings of the distributed engines out of ``deps_env()``."""
    return {k: found[k] for k in DEPS_ENV_KEYS if k in found}


def deps_pids(
    found: dict[str, str], names: Iterable[str] = ("redis", "kafka", "cassandra")
) -> dict[str, int]:
    """Pids of the servers ``scripts/deps`` runs, from its pid files (``PID STARTTIME``;
    a pid counts only while alive with that start time, as ``scripts/deps`` checks)."""
    run = Path(found.get("TIDINGS_DEPS_DIR") or ROOT / ".deps")
    pids: dict[str, int] = {}
    for name in names:
        try:
            fields = (run / "pids" / f"{name}.pid").read_text().split()
            pid = int(fields[0])
        except (OSError, ValueError, IndexError):
            continue
        started = start_time(pid)
        if started is None or (len(fields) > 1 and started != fields[1]):
            continue
        pids[name] = pid
    return pids


# ---- tidings processes --------------------------------------------------------------


@dataclass
class Server:
    """One ``tidings`` process that printed its URL and its operations URL."""

    name: str
    proc: asyncio.subprocess.Process
    url: str
    log: Path
    ops_url: str = ""
    """Where its ``/metrics`` is (the operations port)."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None


def log_tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


async def start(
    name: str,
    args: Sequence[str],
    data: Path,
    env: dict[str, str],
    log: Path,
    timeout: float = 120.0,
    *,
    port: int = 0,
    ops_port: int = 0,
) -> Server:
    """Run ``tidings ARGS --port PORT --ops-port OPS_PORT --data-dir DATA`` (free ports
    by default) until it prints ``is up: URL`` and ``metrics OPS_URL/metrics``.

    Its stderr goes to ``log``; raises ``ServerError`` (with the log's tail) when it
    exits or stays silent for ``timeout`` seconds."""
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            TIDINGS,
            *args,
            "--port",
            str(port),
            "--ops-port",
            str(ops_port),
            "--data-dir",
            str(data),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env,
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    url = ""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            line = (await asyncio.wait_for(proc.stdout.readline(), left)).decode()
            if not line:
                await asyncio.wait_for(proc.wait(), 5)
                raise ServerError(
                    f"tidings {' '.join(args)} exited ({proc.returncode}) during start-up; "
                    f"{log}:\n{log_tail(log)}"
                )
            if match := UP.search(line):
                url = match.group(1)
            elif url and (match := OPS.match(line)):
                server = Server(name, proc, url, log, match.group(1))
                # Later stdout lines are few, but never let a full pipe block the server.
                asyncio.get_running_loop().create_task(_drain(proc.stdout))
                return server
    except TimeoutError:
        await _kill(proc)
        raise ServerError(
            f"tidings {' '.join(args)} printed no URL within {timeout:.0f}s; "
            f"{log}:\n{log_tail(log)}"
        ) from None
    except BaseException:
        await _kill(proc)
        raise


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.read(65536):
            pass


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), 10)


async def stop(servers: Iterable[Server], grace: float = 20.0) -> None:
    """SIGTERM every server, then SIGKILL what is still alive after ``grace`` seconds."""
    servers = list(servers)
    for server in servers:
        if server.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                server.proc.terminate()

    async def wait(server: Server) -> None:
        try:
            await asyncio.wait_for(server.proc.wait(), grace)
        except TimeoutError:
            await _kill(server.proc)

    await asyncio.gather(*(wait(s) for s in servers))


async def delete_region_topics(bootstrap: str, region: str) -> int:
    """Delete the Kafka topics of a bench region (``tidings.<region>.*``): left behind,
    thousands of idle partitions make Kafka slow to start and busy when idle, which
    weighs on every later figure. Returns how many were deleted."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(f"tidings.{region}.")]
        if topics:
            await admin.delete_topics(topics)
        return len(topics)
    finally:
        await admin.close()


def cassandra_contact(found: dict[str, str]) -> tuple[str, int]:
    """(host, port) of the first Cassandra contact point ``scripts/deps`` started."""
    host = found["TIDINGS_CASSANDRA_CONTACT_POINTS"].split(",")[0].strip()
    return host, int(found.get("TIDINGS_CASSANDRA_PORT") or 9042)


def drop_keyspace(contact: tuple[str, int], keyspace: str) -> None:
    """Drop a bench run's keyspace (blocking: run it in a thread)."""
    from cassandra.cluster import Cluster

    cluster = Cluster([contact[0]], port=contact[1], protocol_version=4)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        cluster.shutdown()


# ---- /proc --------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` from field 3 (state) on: index = field number - 3."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """When ``pid`` started (field 22 of ``/proc/PID/stat``, clock ticks since boot): a
    pid file holds it beside the pid, so a reused pid does not pass for the process."""
    stat = _stat(pid)
    return None if stat is None else stat[19]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used (``utime + stime``), None if gone."""
    stat = _stat(pid)
    if stat is None:
        return None
    return (int(stat[11]) + int(stat[12])) / CLK_TCK


def rss_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB (``VmRSS``), None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                children.setdefault(int(stat[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree
