"""Message-path benchmark: the yardstick of the gateway's message path, on either engine set.

Starts the servers itself, on a fresh data directory (and, for ``distributed``, a fresh
region on the real Redis, Kafka and Cassandra of ``scripts/deps``), then runs these
phases, each on fresh accounts (``--phase`` picks some, in this order):

live     ``--pairs`` sender/receiver pairs, every socket connected (past ``queue-empty``)
         before the first send; each sender sends ``--messages`` messages of ``--size``
         random bytes to its receiver over its WebSocket, at most ``--window`` sends
         awaiting their answer; receivers ack every delivery, senders ack the ``delivered``
         receipts that flow back. Latency: the sender's write to the receiver's deliver.
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
import base64
import contextlib
import functools
import json
import os
import re
import resource
import secrets
import shutil
import struct
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import _servers
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

T = TypeVar("T")

PHASES = ("live", "offline", "idle", "storm")
HEADER = struct.Struct("<IId")
"""The first bytes of every message: sender index, sequence number, send time
(``time.perf_counter()`` of the load generator, which is one process)."""
HEADER_B64 = 4 * ((HEADER.size + 2) // 3)
"""Base64 characters that cover the header."""
PING_AFTER_S = 30.0
"""The protocol wants a frame at least every 30 s (the server closes after 90 s)."""
RETRY_STATUSES = frozenset({429, 503})
SEND_ATTEMPTS = 10
REGISTER_ATTEMPTS = 8
CODE_ATTEMPTS = 3
"""Codes requested per number at most (the per-number burst of code requests is 3)."""
MAX_FRAME = 1 << 20
DEPS_MEASURED = ("redis", "kafka", "cassandra")

dumps = functools.partial(json.dumps, separators=(",", ":"))
loads = json.loads


class BenchError(Exception):
    """The run cannot go on (setup failed); the message says why."""


class Closed(Exception):
    """The socket closed before the request was answered."""


class CodeRefused(Exception):
    """``/v1/auth/register`` refused the one-time code just read from the outbox."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Refused(Exception):
    """A socket could not be opened, or closed before ``queue-empty``."""


# ---- small helpers --------------------------------------------------------------------


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p95/p99/max/mean of ``values`` (seconds) in milliseconds; None when empty."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] * scale, 2)

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1] * scale, 2),
        "mean": round(sum(ordered) / n * scale, 2),
    }


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def until(event: asyncio.Event, deadline: float) -> bool:
    """Wait for ``event`` until the monotonic ``deadline``; True if it was set."""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
    return event.is_set()


async def bounded(items: Iterable[T], limit: int, job: Callable[[T], Awaitable[Any]]) -> None:
    """Run ``job`` over ``items``, at most ``limit`` at once."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await job(item)

    try:
        async with asyncio.TaskGroup() as group:  # a failure cancels the others
            for item in items:
                group.create_task(one(item))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None


def error_text(answer: dict[str, Any]) -> str:
    err = (answer.get("body") or {}).get("error") or {}
    return f"{answer.get('status')} {err.get('code', '?')}"


# ---- servers and their CPU ------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    own: float
    cpu: dict[str, float]
    pids: dict[str, tuple[int, ...]]


class Meter:
    """CPU seconds (``utime + stime`` from ``/proc/PID/stat``) and RSS of the named server
    processes, and this process's own CPU.

    ``procs`` are the processes this run started (fixed pids); ``deps`` names servers of
    ``scripts/deps`` whose pids are read again from its pid files at every sample, as
    other users of the machine may restart them: a process whose pid changed within a
    window is reported as ``restarted`` (its figure is then the new process's CPU)."""

    def __init__(
        self,
        procs: dict[str, list[int]],
        deps: Sequence[str] = (),
        found: dict[str, str] | None = None,
    ) -> None:
        self.procs, self.deps, self.found = procs, tuple(deps), found or {}

    def _pids(self) -> dict[str, tuple[int, ...]]:
        pids = {name: tuple(p) for name, p in self.procs.items()}
        if self.deps:
            live = _servers.deps_pids(self.found, self.deps)
            pids.update({name: (live[name],) if name in live else () for name in self.deps})
        return pids

    def sample(self) -> Sample:
        pids = self._pids()
        cpu = {n: sum(_servers.cpu_seconds(p) or 0.0 for p in ps) for n, ps in pids.items()}
        return Sample(time.perf_counter(), own_cpu(), cpu, pids)

    def rss(self) -> dict[str, float]:
        return {
            name: round(sum(_servers.rss_mib(p) or 0.0 for p in pids), 1)
            for name, pids in self._pids().items()
        }

    @staticmethod
    def delta(start: Sample, end: Sample) -> dict[str, Any]:
        wall = max(end.wall - start.wall, 1e-9)
        cpu: dict[str, float] = {}
        restarted: list[str] = []
        for name, value in end.cpu.items():
            if start.pids.get(name) == end.pids[name]:
                cpu[name] = round(max(0.0, value - start.cpu.get(name, 0.0)), 3)
            else:
                restarted.append(name)
                cpu[name] = round(value, 3)
        total = round(sum(cpu.values()), 3)
        own = round(end.own - start.own, 3)
        return {
            "wall_s": round(wall, 3),
            "server_cpu_s": {**cpu, "total": total},
            "server_cpu_share": round(total / wall, 3),
            "restarted": restarted,
            "loadgen_cpu_s": own,
            "loadgen_cpu_share": round(own / wall, 3),
        }


class Outbox:
    """Dev-mode one-time codes from the server's ``otp-outbox.jsonl`` (one JSON object a
    line: ``{"phone", "code", "at"}``), read incrementally: only whole lines are taken, a
    line still being written waits for the next read. Reads are synchronous and short
    (no ``await`` inside), so concurrent registrations never race on the offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._codes: dict[str, str] = {}

    def _scan(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = loads(line)
                self._codes[str(entry["phone"])] = str(entry["code"])
        self._offset += end

    async def code(self, phone: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = self._codes.pop(phone, None)
            if found is not None:
                return found
            self._scan()
            found = self._codes.pop(phone, None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise BenchError(f"no one-time code for {phone} in {self.path} (dev mode?)")
            await asyncio.sleep(0.02)


@dataclass
class Account:
    phone: str
    user_id: str
    token: str


# ---- one socket -----------------------------------------------------------------------


class Sink:
    """What a phase does with a socket's frames; the default ignores messages."""

    def __init__(self) -> None:
        self.closes: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def message(self, conn: Conn, body: dict[str, Any], now: float) -> None:
        """A ``deliver`` of a message (already acked)."""

    def receipt(self, conn: Conn, body: dict[str, Any]) -> None:
        """A ``deliver`` of a receipt (already acked)."""

    def closed(self, conn: Conn, code: int, reason: str) -> None:
        self.closes[f"{code} {reason}".strip()] += 1


class Conn:
    """One device's socket. A reader task acks every ``deliver`` at once, hands it to the
    sink, answers the requests waiting on a ``response`` and notes a close by the
    server (code and reason)."""

    def __init__(self, ws: ClientConnection, account: Account, sink: Sink, started: float):
        self.ws, self.account, self.sink = ws, account, sink
        self.started = started
        self.ready_at = 0.0
        self.ready = asyncio.Event()
        self.closed = False
        self.closing = False
        self.close_code: tuple[int, str] | None = None
        self.last_sent = time.monotonic()
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def send_text(self, text: str) -> None:
        self.last_sent = time.monotonic()
        await self.ws.send(text)

    async def request(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request frame and wait for its ``response``; raises ``Closed``."""
        if self.closed:
            raise Closed()
        self._ids += 1
        rid = f"r{self._ids}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        frame: dict[str, Any] = {"id": rid, "type": kind}
        if body is not None:
            frame["body"] = body
        try:
            await self.send_text(dumps(frame))
        except ConnectionClosed:
            self.pending.pop(rid, None)
            raise Closed() from None
        return await future

    async def ping(self) -> None:
        self._ids += 1
        with contextlib.suppress(ConnectionClosed):
            await self.send_text(dumps({"id": f"p{self._ids}", "type": "ping"}))

    async def _read(self) -> None:
        ws, sink = self.ws, self.sink
        try:
            while True:
                raw = await ws.recv()
                now = time.perf_counter()
                frame = loads(raw)
                kind = frame.get("type")
                if kind == "deliver":
                    await self.send_text(
                        dumps({"id": frame["id"], "type": "response", "status": 200})
                    )
                    body = frame["body"]
                    if body.get("type") == "message":
                        sink.message(self, body, now)
                    else:
                        sink.receipt(self, body)
                elif kind == "response":
                    future = self.pending.pop(frame.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif kind == "queue-empty":
                    self.ready_at = now
                    self.ready.set()
        except ConnectionClosed as exc:
            if not self.closing:
                rcvd = exc.rcvd
                if rcvd is not None:
                    self.close_code = (rcvd.code, rcvd.reason)
                else:
                    self.close_code = (1006, "connection dropped, no close frame")
                sink.closed(self, *self.close_code)
        except Exception as exc:  # a frame this load generator cannot read: report it
            self.close_code = (0, f"load generator: {type(exc).__name__}: {exc}")
            sink.closed(self, *self.close_code)
            with contextlib.suppress(Exception):
                await ws.close()
        finally:
            self.closed = True
            self.ready.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(Closed())
            self.pending.clear()

    async def close(self) -> None:
        if not self.closed:
            self.closing = True
            with contextlib.suppress(Exception):
                await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)


# ---- the message phases' bookkeeping --------------------------------------------------


class Traffic(Sink):
    """Sends and deliveries of one message phase."""

    def __init__(self, latency_from_connect: bool = False) -> None:
        super().__init__()
        self.latency_from_connect = latency_from_connect
        self.attempted = 0
        self.accepted: dict[tuple[int, int], tuple[int, str]] = {}
        """(sender, seq) -> (rank in the sender's accept order, server id)"""
        self._ranks: Counter[int] = Counter()
        self.accept_latency: list[float] = []
        self.send_refused: Counter[str] = Counter()
        self.refused_example: dict[str, Any] = {}
        self.retried = 0
        self.unsent = 0
        self.got: dict[tuple[int, int], float] = {}
        self.order: defaultdict[int, list[int]] = defaultdict(list)
        self.latency: list[float] = []
        self.duplicates = 0
        self.malformed = 0
        self.last_at = 0.0
        self.receipt_frames = 0
        self.receipted: set[str] = set()
        self.missing: set[tuple[int, int]] | None = None
        self.unreceipted: set[str] | None = None
        self.all_in = asyncio.Event()
        self.receipts_in = asyncio.Event()

    def accept(self, sender: int, seq: int, server_id: str) -> None:
        self.accepted[(sender, seq)] = (self._ranks[sender], server_id)
        self._ranks[sender] += 1

    def message(self, conn: Conn, body: dict[str, Any], now: float) -> None:
        try:
            sender, seq, sent = HEADER.unpack_from(base64.b64decode(str(body["body"])[:HEADER_B64]))
        except (KeyError, ValueError, struct.error):
            self.malformed += 1
            return
        key = (sender, seq)
        if key in self.got:
            self.duplicates += 1
            return
        self.got[key] = now
        self.order[sender].append(seq)
        self.latency.append(now - (conn.started if self.latency_from_connect else sent))
        self.last_at = now
        if self.missing is not None:
            self.missing.discard(key)
            if not self.missing:
                self.all_in.set()

    def receipt(self, conn: Conn, body: dict[str, Any]) -> None:
        self.receipt_frames += 1
        receipt = body.get("receipt") or {}
        if receipt.get("kind") == "delivered":
            ids = receipt.get("message_ids") or ()
            self.receipted.update(ids)
            if self.unreceipted is not None:
                self.unreceipted.difference_update(ids)
                if not self.unreceipted:
                    self.receipts_in.set()

    def senders_done(self) -> None:
        """Every send is answered (or given up): now the phase knows what to wait for."""
        self.missing = set(self.accepted) - set(self.got)
        if not self.missing:
            self.all_in.set()
        self.unreceipted = {sid for _, sid in self.accepted.values()} - self.receipted
        if not self.unreceipted:
            self.receipts_in.set()

    def hopeless(self, receivers: Sequence[Conn | None]) -> bool:
        """True when every message still awaited is for a receiver (``receivers[sender]``)
        whose socket is closed or never opened: nothing more can arrive."""
        if self.missing is None:
            return False
        for sender, _ in self.missing:
            conn = receivers[sender] if sender < len(receivers) else None
            if conn is not None and not conn.closed:
                return False
        return True

    def reordered(self) -> int:
        """Messages that arrived after one their sender had sent later (per conversation,
        in the order the server accepted them)."""
        count = 0
        for sender, seqs in self.order.items():
            top = -1
            for seq in seqs:
                entry = self.accepted.get((sender, seq))
                if entry is None:
                    continue
                if entry[0] < top:
                    count += 1
                top = max(top, entry[0])
        return count


async def send_messages(
    conn: Conn, sender: int, to_user: str, count: int, window: int, size: int, traffic: Traffic
) -> None:
    """``count`` messages to ``to_user``'s device 1, at most ``window`` awaiting an answer.

    Answers 429/503 are retried (same client id, same bytes) after a short pause."""
    next_seq = 0
    filler = max(0, size - HEADER.size)

    async def worker() -> None:
        nonlocal next_seq
        while next_seq < count and not conn.closed:
            seq = next_seq
            next_seq += 1
            traffic.attempted += 1
            payload = HEADER.pack(sender, seq, time.perf_counter()) + os.urandom(filler)
            body = {
                "id": str(uuid.uuid4()),
                "to": {"user": to_user},
                "ciphertexts": {
                    to_user: [{"device": 1, "body": base64.b64encode(payload).decode()}]
                },
            }
            for attempt in range(SEND_ATTEMPTS):
                started = time.perf_counter()
                try:
                    answer = await conn.request("send", body)
                except Closed:
                    traffic.unsent += 1
                    return
                status = answer.get("status")
                if status == 200:
                    traffic.accept_latency.append(time.perf_counter() - started)
                    traffic.accept(sender, seq, str(answer["body"]["server_id"]))
                    break
                if status in RETRY_STATUSES and attempt + 1 < SEND_ATTEMPTS:
                    traffic.retried += 1
                    await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))
                    continue
                traffic.send_refused[error_text(answer)] += 1
                traffic.refused_example.setdefault(error_text(answer), answer.get("body"))
                break

    await asyncio.gather(*(worker() for _ in range(max(1, min(window, count)))))


# ---- the run --------------------------------------------------------------------------


class Run:
    """The servers, the accounts' one-time codes, the open sockets and the phases."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.servers: list[_servers.Server] = []
        self.url = ""
        self.delivery_url = ""
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
        procs: dict[str, list[int]] = {}
        if args.engine == "embedded":
            env = dict(base, TIDINGS_ENGINE="embedded")
            server = await _servers.start("server", ["up"], data, env, log)
            self.servers.append(server)
            self.url = self.delivery_url = server.url
            procs["server"] = _servers.process_tree(server.pid)
        else:
            self.progress("scripts/deps up redis kafka cassandra s3")
            found = await asyncio.to_thread(_servers.deps_env)
            region = f"bench{uuid.uuid4().hex[:8]}"
            self.config["region"] = region
            env = dict(
                base,
                **_servers.distributed_settings(found),
                TIDINGS_ENGINE="distributed",
                TIDINGS_REGION=region,
                TIDINGS_DEV_MODE="true",
            )
            for name in ("gateway", "delivery", "presence"):
                self.progress(f"starting tidings serve {name} (region {region})")
                server = await _servers.start(name, ["serve", name], data, env, log)
                self.servers.append(server)
                procs[name] = _servers.process_tree(server.pid)
            self.url = self.servers[0].url
            self.delivery_url = self.servers[1].url
            deps = _servers.deps_pids(found, DEPS_MEASURED)
            for name in DEPS_MEASURED:
                if name not in deps:
                    raise BenchError(f"no live pid for {name} under scripts/deps' pid files")
        self.config["servers"] = {s.name: {"url": s.url, "pid": s.pid} for s in self.servers}
        if args.engine == "embedded":
            self.meter = Meter(procs)
        else:
            self.meter = Meter(procs, DEPS_MEASURED, found)
        self.config["pids"] = {k: list(v) for k, v in self.meter.sample().pids.items()}
        self.outbox = Outbox(data / "otp-outbox.jsonl")
        self.http = httpx.AsyncClient(
            base_url=self.url,
            timeout=30.0,
            limits=httpx.Limits(max_connections=self.args.connect_concurrency),
        )
        self._pinger = asyncio.get_running_loop().create_task(self._ping_loop())
        self.progress("servers up: " + ", ".join(f"{s.name} {s.url}" for s in self.servers))

    async def stop_servers(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        if self.http is not None:
            await self.http.aclose()
        await _servers.stop(self.servers)

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

    # -- accounts --
    def phones(self, n: int) -> list[str]:
        self.phase_no += 1
        return [f"+1999{self.run_tag}{self.phase_no % 10}{i:05d}" for i in range(n)]

    async def register(self, n: int) -> list[Account]:
        """``n`` fresh accounts, ``--connect-concurrency`` registrations at a time."""
        assert self.http is not None
        assert self.outbox is not None
        http, outbox = self.http, self.outbox
        phones = self.phones(n)
        accounts: dict[str, Account] = {}

        async def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            for attempt in range(REGISTER_ATTEMPTS):
                try:
                    r = await http.post(path, json=body)
                except httpx.HTTPError as exc:
                    if attempt + 1 == REGISTER_ATTEMPTS:
                        raise BenchError(f"POST {path}: {exc!r}") from exc
                else:
                    if r.status_code < 300:
                        answer: dict[str, Any] = r.json()
                        return answer
                    if r.status_code == 401 and path == "/v1/auth/register":
                        raise CodeRefused(f"{r.status_code} {r.text}")
                    if r.status_code not in RETRY_STATUSES or attempt + 1 == REGISTER_ATTEMPTS:
                        raise BenchError(
                            f"POST {path} {body.get('phone')}: {r.status_code} {r.text}"
                        )
                await asyncio.sleep(min(5.0, 0.25 * 2**attempt))
            raise AssertionError("unreachable")

        async def one(phone: str) -> None:
            for attempt in range(CODE_ATTEMPTS):
                await call("/v1/auth/code", {"phone": phone})
                code = await outbox.code(phone)
                body = {
                    "phone": phone,
                    "code": code,
                    "registration_id": secrets.randbelow(16380) + 1,
                }
                try:
                    tokens = await call("/v1/auth/register", body)
                except CodeRefused as exc:  # a fresh code, within the per-number burst of 3
                    self.register_refusals[exc.text] += 1
                    if attempt + 1 == CODE_ATTEMPTS:
                        raise BenchError(
                            f"POST /v1/auth/register {phone}: {exc.text} ({CODE_ATTEMPTS} codes)"
                        ) from None
                    continue
                accounts[phone] = Account(
                    phone, str(tokens["user_id"]), str(tokens["access_token"])
                )
                return

        started = time.perf_counter()
        try:
            await asyncio.wait_for(
                bounded(phones, self.args.connect_concurrency, one), self.args.timeout
            )
        except TimeoutError:
            raise BenchError(
                f"registered only {len(accounts)} of {n} accounts in {self.args.timeout:.0f}s"
            ) from None
        self.progress(
            f"registered {n} accounts in {time.perf_counter() - started:.1f}s "
            f"({n / max(1e-9, time.perf_counter() - started):.0f}/s)"
        )
        return [accounts[p] for p in phones]

    # -- sockets --
    async def open(self, account: Account, sink: Sink, deadline: float) -> Conn:
        """A socket past ``queue-empty``; raises ``Refused`` (counted in ``sink``)."""
        started = time.perf_counter()
        ws_url = self.url.replace("http://", "ws://", 1) + "/v1/ws"
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                ws = await connect(
                    ws_url,
                    additional_headers={"Authorization": f"Bearer {account.token}"},
                    max_size=MAX_FRAME,
                    ping_interval=None,
                    open_timeout=None,
                    close_timeout=5,
                    compression=None if self.args.compression == "none" else "deflate",
                    user_agent_header=None,
                )
        except InvalidStatus as exc:
            reason = f"HTTP {exc.response.status_code}"
            sink.refused[reason] += 1
            raise Refused(reason) from None
        except TimeoutError:
            sink.refused["no handshake before the deadline"] += 1
            raise Refused("timeout") from None
        except (OSError, InvalidHandshake, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:120]
            sink.refused[reason] += 1
            raise Refused(reason) from None
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

    async def inbox_writes(self) -> float | None:
        """``tidings_inbox_writes_total`` of the delivery process (None: unreadable)."""
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                text = (await http.get(f"{self.delivery_url}/metrics")).text
        except httpx.HTTPError:
            return None
        match = re.search(r"^tidings_inbox_writes_total\s+([0-9.e+]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    # -- phases --
    async def phase_live(self) -> dict[str, Any]:
        args = self.args
        accounts = await self.register(2 * args.pairs)
        receivers = accounts[args.pairs :]
        traffic = Traffic()
        deadline = time.monotonic() + args.timeout
        conns = await self.open_many(accounts, traffic, deadline, args.connect_concurrency)
        sconns, rconns = conns[: args.pairs], conns[args.pairs :]
        connected = sum(c is not None for c in conns)
        self.progress(f"live: {connected} of {len(accounts)} sockets connected; sending")
        s0 = self.meter.sample()
        jobs = [
            send_messages(s, i, r_acc.user_id, args.messages, args.window, args.size, traffic)
            for i, (s, r, r_acc) in enumerate(zip(sconns, rconns, receivers, strict=True))
            if s is not None and r is not None
        ]
        timed_out = await self._within(asyncio.gather(*jobs), deadline)
        traffic.senders_done()
        timed_out |= not await self.wait(traffic.all_in, deadline, lambda: traffic.hopeless(rconns))
        end = traffic.last_at or time.perf_counter()
        self.progress(f"live: {len(traffic.got)} of {len(traffic.accepted)} delivered; receipts")
        await self.wait(traffic.receipts_in, min(deadline, time.monotonic() + args.receipt_grace))
        s1 = self.meter.sample()
        rss = self.meter.rss()
        out = self._message_figures(traffic, s0, s1, end - s0.wall, rconns, timed_out)
        out["messages"]["recovered_on_reconnect"] = await self.recheck(traffic, rconns, receivers)
        out["messages"]["receipts_recovered_on_reconnect"] = await self.recheck_receipts(
            traffic, sconns, accounts[: args.pairs]
        )
        out.update(
            pairs=args.pairs,
            sockets=self._sockets(len(accounts), connected, traffic),
            latency_from="send",
            rss_mib=rss,
        )
        await self.close(conns)
        return out

    async def phase_offline(self) -> dict[str, Any]:
        args = self.args
        accounts = await self.register(2 * args.pairs)
        senders, receivers = accounts[: args.pairs], accounts[args.pairs :]
        traffic = Traffic(latency_from_connect=True)
        deadline = time.monotonic() + args.timeout
        sconns = await self.open_many(senders, traffic, deadline, args.connect_concurrency)
        writes0 = await self.inbox_writes()
        s0 = self.meter.sample()
        jobs = [
            send_messages(s, i, r.user_id, args.messages, args.window, args.size, traffic)
            for i, (s, r) in enumerate(zip(sconns, receivers, strict=True))
            if s is not None
        ]
        timed_out = await self._within(asyncio.gather(*jobs), deadline)
        traffic.senders_done()
        sent_s = time.perf_counter() - s0.wall
        self.progress(f"offline: {len(traffic.accepted)} sends accepted in {sent_s:.1f}s")
        stored_s = None
        if writes0 is not None:  # wait until the delivery worker stored every envelope
            while time.monotonic() < deadline and self.servers_alive():
                now_writes = await self.inbox_writes()
                if now_writes is not None and now_writes - writes0 >= len(traffic.accepted):
                    stored_s = round(time.perf_counter() - s0.wall, 3)
                    break
                await asyncio.sleep(0.1)
        self.progress(f"offline: stored after {stored_s}s; {len(receivers)} receivers connect")
        s_drain = self.meter.sample()
        rconns = await self.open_many(receivers, traffic, deadline, None)
        connected = sum(c is not None for c in [*sconns, *rconns])
        timed_out |= not await self.wait(traffic.all_in, deadline, lambda: traffic.hopeless(rconns))
        end = traffic.last_at or time.perf_counter()
        s_drained = self.meter.sample()
        self.progress(f"offline: {len(traffic.got)} of {len(traffic.accepted)} drained; receipts")
        await self.wait(traffic.receipts_in, min(deadline, time.monotonic() + args.receipt_grace))
        s1 = self.meter.sample()
        rss = self.meter.rss()
        out = self._message_figures(traffic, s0, s1, end - s_drain.wall, rconns, timed_out)
        out["messages"]["recovered_on_reconnect"] = await self.recheck(traffic, rconns, receivers)
        out["messages"]["receipts_recovered_on_reconnect"] = await self.recheck_receipts(
            traffic, sconns, senders
        )
        drain = Meter.delta(s_drain, s_drained)
        delivered = max(1, len(traffic.got))
        out.update(
            pairs=args.pairs,
            sockets=self._sockets(len(accounts), connected, traffic),
            latency_from="connect",
            send_s=round(sent_s, 3),
            stored_s=stored_s,
            drain_s=round(end - s_drain.wall, 3),
            drain_cpu_s=drain["server_cpu_s"],
            drain_cpu_per_1k=round(drain["server_cpu_s"]["total"] / delivered * 1000, 4),
            rss_mib=rss,
        )
        await self.close([*sconns, *rconns])
        return out

    async def phase_idle(self) -> dict[str, Any]:
        args = self.args
        accounts = await self.register(args.idle)
        sink = Sink()
        await asyncio.sleep(1.0)  # let the registrations' work settle before measuring
        b0 = self.meter.sample()  # the noise floor: the servers with no socket at all
        await asyncio.sleep(min(3.0, args.hold))
        base = Meter.delta(b0, self.meter.sample())
        rss0 = self.meter.rss()
        deadline = time.monotonic() + args.timeout
        s0 = self.meter.sample()
        conns = await self.open_many(accounts, sink, deadline, args.connect_concurrency)
        connect_s = time.perf_counter() - s0.wall
        timed_out = time.monotonic() >= deadline
        connected = [c for c in conns if c is not None]
        self.progress(f"idle: {len(connected)} of {args.idle} connected in {connect_s:.1f}s")
        s_hold = self.meter.sample()
        rss1 = self.meter.rss()
        await asyncio.sleep(max(0.0, min(args.hold, deadline - time.monotonic())))
        s1 = self.meter.sample()
        rss2 = self.meter.rss()
        still = sum(not c.closed for c in connected)
        out = self._socket_figures(sink, s0, s1, len(accounts), connected, connect_s, timed_out)
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
        await self.close(conns)
        return out

    async def phase_storm(self) -> dict[str, Any]:
        args = self.args
        accounts = await self.register(args.storm)
        sink = Sink()
        await asyncio.sleep(1.0)
        deadline = time.monotonic() + args.timeout
        s0 = self.meter.sample()
        conns = await self.open_many(accounts, sink, deadline, None)
        connect_s = time.perf_counter() - s0.wall
        timed_out = time.monotonic() >= deadline
        connected = [c for c in conns if c is not None]
        self.progress(f"storm: {len(connected)} of {args.storm} connected in {connect_s:.1f}s")
        await asyncio.sleep(max(0.0, min(args.storm_hold, deadline - time.monotonic())))
        s1 = self.meter.sample()
        out = self._socket_figures(sink, s0, s1, len(accounts), connected, connect_s, timed_out)
        out.update(
            connected_after_hold=sum(not c.closed for c in connected),
            hold_s=args.storm_hold,
            rss_mib=self.meter.rss(),
        )
        await self.close(conns)
        return out

    async def recheck(
        self, traffic: Traffic, rconns: list[Conn | None], receivers: Sequence[Account]
    ) -> int | None:
        """After a phase that lost messages: reconnect each receiver still missing some and
        count the lost messages its backlog brings before ``queue-empty``. Those were
        stored in the inbox but never pushed to the open socket. None: nothing was lost."""
        lost = set(traffic.accepted) - set(traffic.got)
        if not lost:
            return None
        pairs = sorted({sender for sender, _ in lost if sender < len(receivers)})
        self.progress(f"{len(lost)} messages lost: reconnecting {len(pairs)} receivers to look")
        await self.close([rconns[i] for i in pairs])
        probe = Traffic()
        deadline = time.monotonic() + min(30.0, self.args.timeout)
        conns = await self.open_many(
            [receivers[i] for i in pairs], probe, deadline, self.args.connect_concurrency
        )
        await self.close(conns)
        return len(lost & set(probe.got))

    async def recheck_receipts(
        self, traffic: Traffic, sconns: list[Conn | None], senders: Sequence[Account]
    ) -> int | None:
        """Like ``recheck``, for ``delivered`` receipts that never reached an open sender
        socket: reconnect those senders and count the missing receipts their backlog
        brings. None: no receipt was missing."""
        missing = set(traffic.unreceipted or ())
        if not missing:
            return None
        by_id = {sid: sender for (sender, _), (_, sid) in traffic.accepted.items()}
        pairs = sorted({by_id[sid] for sid in missing if by_id.get(sid, -1) < len(senders)})
        self.progress(f"{len(missing)} receipts missing: reconnecting {len(pairs)} senders")
        await self.close([sconns[i] for i in pairs])
        probe = Traffic()
        deadline = time.monotonic() + min(30.0, self.args.timeout)
        conns = await self.open_many(
            [senders[i] for i in pairs], probe, deadline, self.args.connect_concurrency
        )
        await self.close(conns)
        return len(missing & probe.receipted)

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

    async def _within(self, job: Awaitable[Any], deadline: float) -> bool:
        """Run ``job`` until ``deadline``; True if it had to be cut short."""
        try:
            await asyncio.wait_for(job, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return True
        return False

    # -- figures --
    def _sockets(self, wanted: int, connected: int, sink: Sink) -> dict[str, Any]:
        return {
            "wanted": wanted,
            "connected": connected,
            "refused": dict(sink.refused),
            "closed_by_server": dict(sink.closes),
            "closed_total": sum(sink.closes.values()),
        }

    def _message_figures(
        self,
        traffic: Traffic,
        s0: Sample,
        s1: Sample,
        span: float,
        rconns: Sequence[Conn | None],
        timed_out: bool,
    ) -> dict[str, Any]:
        lost_keys = set(traffic.accepted) - set(traffic.got)
        closed_receivers = {i for i, c in enumerate(rconns) if c is None or c.close_code}
        lost_closed = sum(1 for sender, _ in lost_keys if sender in closed_receivers)
        delivered = len(traffic.got)
        usage = Meter.delta(s0, s1)
        per_1k = {
            k: round(v / max(1, delivered) * 1000, 4) for k, v in usage["server_cpu_s"].items()
        }
        return {
            "timed_out": timed_out,
            "messages": {
                "attempted": traffic.attempted,
                "sent": len(traffic.accepted),
                "delivered": delivered,
                "lost": len(lost_keys),
                "lost_receiver_closed": lost_closed,
                "duplicates": traffic.duplicates,
                "reordered": traffic.reordered(),
                "malformed": traffic.malformed,
                "refused": dict(traffic.send_refused),
                "refused_example": traffic.refused_example,
                "retried": traffic.retried,
                "unsent_sender_closed": traffic.unsent,
                "receipts_acked": traffic.receipt_frames,
                "receipts_missing": len(traffic.unreceipted or ()),
                "messages_receipted": len(
                    traffic.receipted & {s for _, s in traffic.accepted.values()}
                ),
            },
            "seconds": round(span, 3),
            "throughput": round(delivered / span, 1) if span > 0 and delivered else 0.0,
            "throughput_unit": "msg/s",
            "latency_ms": percentiles(traffic.latency),
            "accept_latency_ms": percentiles(traffic.accept_latency),
            **usage,
            "cpu_per_1k": per_1k,
            "cpu_per_1k_unit": "server CPU s per 1,000 delivered messages",
        }

    def _socket_figures(
        self,
        sink: Sink,
        s0: Sample,
        s1: Sample,
        wanted: int,
        connected: list[Conn],
        connect_s: float,
        timed_out: bool,
    ) -> dict[str, Any]:
        usage = Meter.delta(s0, s1)
        n = max(1, len(connected))
        last_ready = max((c.ready_at for c in connected), default=s0.wall)
        return {
            "timed_out": timed_out,
            "sockets": self._sockets(wanted, len(connected), sink),
            "accepted": len(connected),
            "refused": sum(sink.refused.values()),
            "closed": sum(sink.closes.values()),
            "seconds": round(connect_s, 3),
            "time_to_all_connected_s": round(last_ready - s0.wall, 3),
            "throughput": round(len(connected) / max(1e-9, last_ready - s0.wall), 1),
            "throughput_unit": "connects/s",
            "latency_ms": percentiles([c.ready_at - c.started for c in connected]),
            "latency_from": "connect start to queue-empty",
            **usage,
            "cpu_per_1k": {k: round(v / n * 1000, 4) for k, v in usage["server_cpu_s"].items()},
            "cpu_per_1k_unit": "server CPU s per 1,000 connected sockets",
        }


# ---- output ---------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{n} x [{k}]" for k, n in sorted(counter.items(), key=lambda kv: -kv[1]))


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
    lat = f["latency_ms"]
    if "messages" in f:
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
            f"  latency        p50 {_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  "
            f"p99 {_ms(lat['p99'])}  max {_ms(lat['max'])} ms  ({f['latency_from']} -> deliver)"
        )
        acc = f["accept_latency_ms"]
        print(
            f"  accept         p50 {_ms(acc['p50'])}  p95 {_ms(acc['p95'])}  "
            f"p99 {_ms(acc['p99'])} ms  (send -> accepted)"
        )
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
    else:
        print(
            f"  connects       {f['throughput']:,.0f}/s; all connected after "
            f"{f['time_to_all_connected_s']:.2f} s; connect -> queue-empty p50 "
            f"{_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  p99 {_ms(lat['p99'])} ms"
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
                + ", ".join(f"{k} {v:.2f}" for k, v in f["idle_cpu_s"].items() if k != "total")
            )
            print(
                f"  no sockets     {f['no_socket_cpu_s']['total']:.2f} s over "
                f"{f['no_socket_s']:.1f} s before connecting ({f['no_socket_cpu_share']:.0%} "
                "of a core: the noise floor): "
                + ", ".join(f"{k} {v:.2f}" for k, v in f["no_socket_cpu_s"].items() if k != "total")
            )
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


def print_summary(result: dict[str, Any]) -> None:
    config = result["config"]
    print(
        f"\n== summary ({config['engine']}; {config['cores']} cores, load average "
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


# ---- main -----------------------------------------------------------------------------


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
        "--receipt-grace",
        type=float,
        default=10.0,
        help="seconds to wait for the last delivered receipts after the last message",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    phases = [x.strip() for x in args.phase.split(",") if x.strip()]
    unknown = [x for x in phases if x not in PHASES]
    if unknown or not phases:
        p.error(f"--phase: unknown {unknown}; choose from {','.join(PHASES)}")
    args.phases = [x for x in PHASES if x in phases]
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
        idle=args.idle,
        hold=args.hold,
        storm=args.storm,
        compression=args.compression,
        timeout=args.timeout,
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
        try:
            await run.start_servers(Path(tmp))
        except (_servers.ServerError, BenchError, OSError) as exc:
            run.failures.append(f"servers did not start: {exc}")
            await run.stop_servers()
            return result, 2
        try:
            for name in args.phases:
                if not run.servers_alive():
                    break
                run.progress(f"phase {name}")
                try:
                    figures = await getattr(run, f"phase_{name}")()
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
