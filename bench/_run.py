"""One benchmark run: the servers it starts, its accounts, its open sockets, and the bounded
waits the phases share."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import _servers
import httpx
from _accounts import Outbox, register
from _client import (
    PING_AFTER_S,
    Account,
    BenchError,
    Conn,
    Refused,
    Sink,
    bounded,
    handshake,
    until,
)
from _meter import DEPS_MEASURED, Meter

from tidings.core.shardmap import shard_map_document, single_region


class Run:
    """The servers, the accounts' one-time codes, the open sockets and the failures seen."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.servers: list[_servers.Server] = []
        self.url = ""
        self.delivery_url = ""
        """The delivery process's operations URL (its ``/metrics``)."""
        self.outbox: Outbox | None = None
        self.meter = Meter({})
        self.http: httpx.AsyncClient | None = None
        self.conns: set[Conn] = set()
        self.run_tag = f"{secrets.randbelow(100_000):05d}"
        self.phase_no = 0
        self.failures: list[str] = []
        self.register_refusals: Counter[str] = Counter()
        """Valid-looking codes the server refused (a new code was requested each time)."""
        self.config: dict[str, Any] = {}
        self._pinger: asyncio.Task[None] | None = None
        self.sink: asyncio.subprocess.Process | None = None
        """The OTLP sink of ``--trace-ratio`` (bench/otlp_sink.py), when started."""

    def progress(self, text: str) -> None:
        if not self.args.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # -- servers --
    async def start_servers(self, tmp: Path) -> None:
        args = self.args
        data, log = tmp / "data", tmp / "server.log"
        self.config["log"] = str(log)
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        base["TIDINGS_LOG_LEVEL"] = "warning"
        base.update(_servers.SIGNUP_LIMITS)
        if getattr(args, "trace_ratio", None) is not None:  # fairness.py has no --trace-ratio
            base.update(await self._tracing_env())
        procs: dict[str, list[int]] = {}
        region = "local" if args.engine == "embedded" else f"bench{uuid.uuid4().hex[:8]}"
        if getattr(args, "shard_map", 0):  # fairness.py has no --shard-map
            shard_map = tmp / "shardmap.json"
            shard_map.write_text(shard_map_document(single_region(region, args.shard_map).shards))
            base["TIDINGS_SHARD_MAP_FILE"] = str(shard_map)
            self.config["shard_map"] = args.shard_map
        if args.engine == "embedded":
            env = dict(base, TIDINGS_ENGINE="embedded")
            server = await _servers.start("server", ["up"], data, env, log)
            self.servers.append(server)
            self.url, self.delivery_url = server.url, server.ops_url
            procs["server"] = _servers.process_tree(server.pid)
            self.meter = Meter(procs)
        else:
            self.progress("scripts/deps up redis kafka cassandra s3")
            found = await asyncio.to_thread(_servers.deps_env)
            self.config["region"] = region
            self.config["kafka_bootstrap"] = found["TIDINGS_KAFKA_BOOTSTRAP"]
            # A keyspace of its own, dropped at the end: in a shared one each run left
            # its rows and tombstones behind, and Cassandra's cost per message rose run
            # after run, which weighed on whichever of two compared runs came later.
            self.config["keyspace"] = f"bench_{region[5:]}"
            self.config["cassandra"] = _servers.cassandra_contact(found)
            env = dict(
                base,
                **_servers.distributed_settings(found),
                TIDINGS_ENGINE="distributed",
                TIDINGS_REGION=region,
                TIDINGS_CASSANDRA_KEYSPACE=self.config["keyspace"],
                TIDINGS_CASSANDRA_MIGRATE="true",
                TIDINGS_DEV_MODE="true",
            )
            for name in ("gateway", "delivery", "presence"):
                self.progress(f"starting tidings serve {name} (region {region})")
                server = await _servers.start(name, ["serve", name], data, env, log)
                self.servers.append(server)
                procs[name] = _servers.process_tree(server.pid)
            self.url = self.servers[0].url
            self.delivery_url = self.servers[1].ops_url
            deps = _servers.deps_pids(found, DEPS_MEASURED)
            for name in DEPS_MEASURED:
                if name not in deps:
                    raise BenchError(f"no live pid for {name} under scripts/deps' pid files")
            self.meter = Meter(procs, DEPS_MEASURED, found)
        self.config["servers"] = {
            s.name: {"url": s.url, "ops_url": s.ops_url, "pid": s.pid} for s in self.servers
        }
        self.config["pids"] = {k: list(v) for k, v in self.meter.sample().pids.items()}
        self.outbox = Outbox(data / "otp-outbox.jsonl")
        self.http = httpx.AsyncClient(
            base_url=self.url,
            timeout=30.0,
            limits=httpx.Limits(max_connections=self.args.connect_concurrency),
        )
        self._pinger = asyncio.get_running_loop().create_task(self._ping_loop())
        self.progress("servers up: " + ", ".join(f"{s.name} {s.url}" for s in self.servers))

    async def _tracing_env(self) -> dict[str, str]:
        """Settings that trace ``--trace-ratio`` of the sends, exporting to the OTLP sink
        started here (or ``--otlp-endpoint``)."""
        endpoint = self.args.otlp_endpoint
        if not endpoint:
            self.sink = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).with_name("otlp_sink.py")),
                stdout=asyncio.subprocess.PIPE,
            )
            assert self.sink.stdout is not None
            line = (await asyncio.wait_for(self.sink.stdout.readline(), 10)).decode()
            endpoint = line.split()[-1]
        self.config["otlp_endpoint"] = endpoint
        return {
            "TIDINGS_OTLP_ENDPOINT": endpoint,
            "TIDINGS_TRACE_SAMPLE_RATIO": str(self.args.trace_ratio),
        }

    async def stop_sink(self) -> None:
        """Stop the OTLP sink, keeping what it received in ``config``."""
        if self.sink is None or self.sink.returncode is not None:
            return
        self.sink.terminate()
        out, _ = await self.sink.communicate()
        self.config["otlp_sink"] = out.decode().strip()

    async def start_or_fail(self, tmp: Path) -> bool:
        """``start_servers``; False (the reason in ``failures``, whatever started stopped
        again) when they did not start."""
        try:
            await self.start_servers(tmp)
        except (_servers.ServerError, BenchError, OSError) as exc:
            self.failures.append(f"servers did not start: {exc}")
            await self.stop_servers()
            return False
        return True

    async def stop_servers(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        if self.http is not None:
            await self.http.aclose()
        await _servers.stop(self.servers)
        await self.stop_sink()  # after the servers: their last spans are flushed at stop
        region, bootstrap = self.config.get("region"), self.config.get("kafka_bootstrap")
        if region and bootstrap:
            try:
                n = await _servers.delete_region_topics(str(bootstrap), str(region))
                self.progress(f"deleted the {n} Kafka topics of region {region}")
            except Exception as e:  # a figure printed already; cleaning is best effort
                self.progress(f"could not delete the Kafka topics of region {region}: {e!r}")
        keyspace, contact = self.config.get("keyspace"), self.config.get("cassandra")
        if keyspace and contact:
            try:
                await asyncio.to_thread(_servers.drop_keyspace, contact, str(keyspace))
                self.progress(f"dropped the Cassandra keyspace {keyspace}")
            except Exception as e:
                self.progress(f"could not drop the Cassandra keyspace {keyspace}: {e!r}")

    def servers_alive(self) -> bool:
        dead = [s for s in self.servers if not s.alive]
        for s in dead:
            msg = f"server process {s.name} (pid {s.pid}) exited with {s.proc.returncode}"
            if msg not in self.failures:
                self.failures.append(msg)
        return not dead

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.conns):
                if not conn.closed and not conn.closing and now - conn.last_sent >= PING_AFTER_S:
                    await conn.ping()

    async def inbox_writes(self) -> float | None:
        """``tidings_inbox_writes_total`` of the delivery process (None: unreadable)."""
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                text = (await http.get(f"{self.delivery_url}/metrics")).text
        except httpx.HTTPError:
            return None
        match = re.search(r"^tidings_inbox_writes_total\s+([0-9.e+]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    # -- accounts --
    def phones(self, n: int) -> list[str]:
        self.phase_no += 1
        return [f"+1999{self.run_tag}{self.phase_no % 10}{i:05d}" for i in range(n)]

    async def register(self, n: int) -> list[Account]:
        """``n`` fresh accounts, ``--connect-concurrency`` registrations at a time."""
        assert self.http is not None
        assert self.outbox is not None
        phones = self.phones(n)
        started = time.perf_counter()
        accounts = await register(
            self.http,
            self.outbox,
            phones,
            self.args.connect_concurrency,
            self.args.timeout,
            self.register_refusals,
        )
        self.progress(
            f"registered {n} accounts in {time.perf_counter() - started:.1f}s "
            f"({n / max(1e-9, time.perf_counter() - started):.0f}/s)"
        )
        return accounts

    # -- sockets --
    async def open(self, account: Account, sink: Sink, deadline: float) -> Conn:
        """A socket past ``queue-empty``; raises ``Refused`` (counted in ``sink``)."""
        started = time.perf_counter()
        ws_url = self.url.replace("http://", "ws://", 1) + "/v1/ws"
        ws = await handshake(ws_url, account, sink, deadline, self.args.compression)
        conn = Conn(ws, account, sink, started)
        self.conns.add(conn)
        if not await until(conn.ready, deadline):
            sink.refused["no queue-empty before the deadline"] += 1
            await self.close([conn])
            raise Refused("no queue-empty")
        if conn.closed:  # counted by the sink as a close
            self.conns.discard(conn)
            raise Refused(f"closed before queue-empty: {conn.close_code}")
        return conn

    async def open_many(
        self, accounts: Sequence[Account], sink: Sink, deadline: float, limit: int | None
    ) -> list[Conn | None]:
        """Open a socket per account (``limit`` at a time, or all at once)."""
        out: list[Conn | None] = [None] * len(accounts)

        async def one(i: int) -> None:
            with contextlib.suppress(Refused):
                out[i] = await self.open(accounts[i], sink, deadline)

        if limit is None:
            await asyncio.gather(*(one(i) for i in range(len(accounts))))
        else:
            await bounded(range(len(accounts)), limit, one)
        return out

    async def close(self, conns: Iterable[Conn | None]) -> None:
        live = [c for c in conns if c is not None]
        await bounded(live, 500, lambda c: c.close())
        self.conns.difference_update(live)

    # -- waits --
    async def wait(
        self, event: asyncio.Event, deadline: float, hopeless: Callable[[], bool] | None = None
    ) -> bool:
        """``until(event, deadline)``, but give up early when a server process died or
        ``hopeless()`` says nothing more can come. True if the event was set."""
        while not event.is_set():
            if time.monotonic() >= deadline or not self.servers_alive():
                break
            if hopeless is not None and hopeless():
                self.progress("giving up the wait: every socket that could still answer is closed")
                break
            await until(event, min(deadline, time.monotonic() + 0.5))
        return event.is_set()

    async def within(self, job: Awaitable[Any], deadline: float) -> bool:
        """Run ``job`` until ``deadline``; True if it had to be cut short."""
        try:
            await asyncio.wait_for(job, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return True
        return False
