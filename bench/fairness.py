"""Fairness benchmark: does one flooding socket degrade everyone else?

Starts the servers itself (as ``bench/message_path.py`` does: one ``tidings up`` on a
fresh data directory, or for ``distributed`` a gateway, a delivery worker and presence in
a fresh region of the real servers), registers four accounts and then measures a probe
user in two windows of ``--duration`` seconds each:

idle   the probe alone: ``--probe-rate`` REST requests a second (``GET /v1/users/me``)
       and as many WebSocket sends to a peer that acks every delivery (the probe's
       write to the ``accepted`` answer);
flood  the same probe while one socket of another account sends ``--rate`` frames a
       second, open loop, cycling through ``--kinds``: ``read`` receipts naming 100
       made-up ids, ``typing`` and sends, all to a user it never talked to (who is
       offline: whatever gets through waits in their inbox).

It prints the probe's p50/p99 idle and under the flood (and the ratio of the p99s: the
goal is at most 2), the frames the flood sent and how they were answered (by kind and
status), and the envelopes stored meanwhile. Times are reported, never judged; exit code
1 when the probe saw an error or a server died, 2 when the servers did not start.

    .venv/bin/python bench/fairness.py                                # embedded, 20 s windows
    .venv/bin/python bench/fairness.py --duration 3                   # a quick look
    .venv/bin/python bench/fairness.py --engine distributed --kinds receipt,typing
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from _client import Account, BenchError, Conn, Sink, dumps, handshake, loads
from _figures import percentiles
from _run import Run
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

KINDS = ("receipt", "typing", "send")
BODY = "AAAA" * 64
"""An opaque 192-byte ciphertext (the server never reads it)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--engine", choices=("embedded", "distributed"), default="embedded")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of each window")
    p.add_argument("--rate", type=float, default=1000.0, help="flood frames per second")
    p.add_argument(
        "--kinds", default=",".join(KINDS), help="flood frame kinds, of " + ",".join(KINDS)
    )
    p.add_argument(
        "--probe-rate",
        type=float,
        default=10.0,
        help="probe REST requests and WebSocket sends per second, each (sends: under 20/s)",
    )
    p.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    p.add_argument("--timeout", type=float, default=120.0, help="bound of set-up and drain")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or any(k not in KINDS for k in args.kinds):
        p.error(f"--kinds: choose from {','.join(KINDS)}")
    args.connect_concurrency = 4  # what Run needs of message_path's options
    return args


def _retrieved(task: asyncio.Future[None]) -> None:
    """A send left running past the flood's window: its error (the socket closed) is
    seen in the figures, not reported as never retrieved."""
    if not task.cancelled():
        task.exception()


async def flood_child(spec: dict[str, Any]) -> None:
    """The flood, in a process of its own (``--flood-child SPEC``) so that making and
    writing its frames never delays the probe's clock: connect, say ``ready``, wait for
    ``go`` on stdin, flood, wait for the answers, print the figures as one JSON line."""
    sink = Sink()
    account = Account("", "", spec["token"])
    deadline = time.monotonic() + 60
    ws = await handshake(spec["ws_url"], account, sink, deadline, spec["compression"])
    target = Account("", spec["target"], "")
    flood = Flood(ws, spec["kinds"], target)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    took = await flood.run(spec["duration"], spec["rate"])
    await flood.drain(30.0)
    flood.reader.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 10)  # a paced socket may not read it soon
    print(json.dumps({**flood.figures(took), "closes": dict(sink.closes)}), flush=True)


async def start_flood(run: Run, args: argparse.Namespace, flooder: Account, target: Account) -> Any:
    """The flood's process, connected and waiting for ``go``."""
    spec = {
        "ws_url": run.url.replace("http://", "ws://", 1) + "/v1/ws",
        "token": flooder.token,
        "target": target.user_id,
        "kinds": args.kinds,
        "rate": args.rate,
        "duration": args.duration,
        "compression": args.compression,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--flood-child",
        json.dumps(spec),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise BenchError(f"the flood process did not connect: {line!r}")
    return proc


class Probe:
    """The probe user: paced REST requests and WebSocket sends, each timed."""

    def __init__(self, http: httpx.AsyncClient, conn: Conn, peer: Account) -> None:
        self.http, self.conn, self.peer = http, conn, peer
        self.errors: Counter[str] = Counter()
        self._ids = itertools.count(1)

    async def rest(self) -> float | None:
        started = time.perf_counter()
        try:
            r = await self.http.get("/v1/users/me")
        except httpx.HTTPError as exc:
            self.errors[f"REST {type(exc).__name__}"] += 1
            return None
        if r.status_code != 200:
            self.errors[f"REST {r.status_code}"] += 1
            return None
        return time.perf_counter() - started

    async def send(self) -> float | None:
        body = {
            "id": f"probe-{uuid.uuid4().hex[:12]}",
            "to": {"user": self.peer.user_id},
            "ciphertexts": {self.peer.user_id: [{"device": 1, "body": BODY}]},
        }
        started = time.perf_counter()
        answer = await self.conn.request("send", body)
        if answer.get("status") != 200:
            self.errors[f"WebSocket send {answer.get('status')}"] += 1
            return None
        return time.perf_counter() - started

    async def window(self, seconds: float, rate: float) -> dict[str, list[float]]:
        """Probe at ``rate`` a second (each kind) for ``seconds``; the latencies."""
        found: dict[str, list[float]] = {"rest": [], "websocket": []}
        tasks: set[asyncio.Task[None]] = set()

        async def one(kind: str) -> None:
            took = await (self.rest() if kind == "rest" else self.send())
            if took is not None:
                found[kind].append(took)

        start = time.monotonic()
        for n in itertools.count():
            due, end = start + n / rate, start + seconds
            if due >= end or time.monotonic() >= end:  # behind a pushing-back server too
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            for kind in found:
                task = asyncio.create_task(one(kind))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=30.0)
        return found


class Flood:
    """One socket writing frames open loop; a reader counts the answers by kind and
    status (and acks whatever is delivered to it)."""

    def __init__(self, ws: ClientConnection, kinds: Sequence[str], target: Account) -> None:
        self.ws, self.kinds, self.target = ws, list(kinds), target
        self.sent: Counter[str] = Counter()
        self.answers: Counter[tuple[str, int]] = Counter()
        self.finished = False
        self.all_answered = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    def _frame(self, n: int) -> str:
        kind = self.kinds[n % len(self.kinds)]
        rid = f"{kind[0]}{n}"
        to = self.target.user_id
        if kind == "receipt":
            ids = [str(uuid.uuid4()) for _ in range(100)]
            body: dict[str, Any] = {"to": to, "kind": "read", "message_ids": ids}
        elif kind == "typing":
            body = {"to": {"user": to}, "state": "started"}
        else:
            cipher = {to: [{"device": 1, "body": BODY}]}
            body = {"id": f"flood-{n}", "to": {"user": to}, "ciphertexts": cipher}
        return dumps({"id": rid, "type": kind, "body": body})

    async def run(self, seconds: float, rate: float) -> float:
        """Send at ``rate`` for ``seconds`` (behind when the server pushes back);
        returns the seconds it took."""
        start = time.monotonic()
        for n in itertools.count():
            due, end = start + n / rate, start + seconds
            if due >= end or time.monotonic() >= end:  # behind a pushing-back server too
                break
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            kind = self.kinds[n % len(self.kinds)]
            # A paced socket's buffers fill and a send waits for room: the window still
            # ends on time. The send is not cancelled then: its first step writes the
            # frame (a cancelled one might not have), so the frame counts as sent and
            # its answer is waited for; only the room for it comes later.
            sending = asyncio.ensure_future(self.ws.send(self._frame(n)))
            sending.add_done_callback(_retrieved)
            done, _ = await asyncio.wait({sending}, timeout=max(0.0, end - time.monotonic()))
            if done and sending.exception() is not None:
                break  # closed by the server: the frame did not go
            self.sent[kind] += 1
            if not done:
                break
        return time.monotonic() - start

    async def _read(self) -> None:
        by_letter = {k[0]: k for k in KINDS}
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                frame = loads(raw)
                if frame.get("type") == "deliver":
                    ack = {"id": frame["id"], "type": "response", "status": 200}
                    await self.ws.send(dumps(ack))
                elif frame.get("type") == "response":
                    kind = by_letter.get(str(frame.get("id", "?"))[:1], "other")
                    self.answers[(kind, int(frame.get("status", 0)))] += 1
                    if self.finished and self.answers.total() >= self.sent.total():
                        self.all_answered.set()

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until every frame sent was answered."""
        self.finished = True
        if self.answers.total() >= self.sent.total():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_answered.wait(), timeout)

    def figures(self, took: float) -> dict[str, Any]:
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, status), count in sorted(self.answers.items()):
            by_kind.setdefault(kind, {})[str(status)] = count
        sent = self.sent.total()
        return {
            "sent": dict(self.sent),
            "frames_per_s": round(sent / max(took, 1e-9), 1),
            "answered": by_kind,
            "accepted": sum(c for (_, status), c in self.answers.items() if status == 200),
            "refused": sum(c for (_, status), c in self.answers.items() if status != 200),
            "unanswered": sent - self.answers.total(),
        }


def window_figures(found: dict[str, list[float]]) -> dict[str, Any]:
    return {kind: {"n": len(v), **percentiles(v)} for kind, v in found.items()}


async def measure(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    probe_user, peer, flooder, stranger = await run.register(4)
    deadline = time.monotonic() + args.timeout
    sink = Sink()
    probe_conn = await run.open(probe_user, sink, deadline)
    await run.open(peer, sink, deadline)  # acks every delivery
    flood_proc = await start_flood(run, args, flooder, stranger)
    headers = {"Authorization": f"Bearer {probe_user.token}"}
    async with httpx.AsyncClient(base_url=run.url, headers=headers, timeout=30.0) as http:
        probe = Probe(http, probe_conn, peer)
        run.progress("warming up")
        await probe.window(min(2.0, args.duration), args.probe_rate)
        stored_before = await run.inbox_writes()
        run.progress(f"idle window: {args.duration:.0f}s")
        idle = await probe.window(args.duration, args.probe_rate)
        run.progress(f"flood window: {args.rate:.0f} frames/s of {','.join(args.kinds)}")
        flood_proc.stdin.write(b"go\n")
        under_flood = await probe.window(args.duration, args.probe_rate)
        out, _ = await asyncio.wait_for(flood_proc.communicate(), 90)  # drain 30 + close 10
        flood_figures = json.loads(out.decode().strip().splitlines()[-1])
        stored_after = await run.inbox_writes()
    idle_f, flood_f = window_figures(idle), window_figures(under_flood)
    ratios = {
        kind: (
            round(flood_f[kind]["p99"] / idle_f[kind]["p99"], 2)
            if flood_f[kind]["p99"] and idle_f[kind]["p99"]
            else None
        )
        for kind in idle_f
    }
    probe_sends = len(idle["websocket"]) + len(under_flood["websocket"])
    stored = None
    if stored_before is not None and stored_after is not None:
        stored = int(stored_after - stored_before)
    return {
        "idle": idle_f,
        "flood": flood_f,
        "p99_ratio": ratios,
        "probe_errors": dict(probe.errors),
        "flood_frames": flood_figures,
        "stored": {"total": stored, "probe_messages_and_receipts": 2 * probe_sends},
        "closes": dict(sink.closes + Counter(flood_figures.pop("closes"))),
    }


def print_figures(f: dict[str, Any], config: dict[str, Any]) -> None:
    print(
        f"fairness ({config['engine']}): probe at {config['probe_rate']:g}/s each, "
        f"windows of {config['duration']:g}s, flood {config['rate']:g} frames/s of "
        f"{','.join(config['kinds'])}"
    )
    head = f"{'idle p50':>9} {'idle p99':>9} {'flood p50':>10} {'flood p99':>10}"
    print(f"{'probe':<10} {head}  p99 x")
    for kind, label in (("rest", "REST"), ("websocket", "WebSocket")):
        i, fl = f["idle"][kind], f["flood"][kind]
        print(
            f"{label:<10} {_ms(i['p50']):>9} {_ms(i['p99']):>9} {_ms(fl['p50']):>10} "
            f"{_ms(fl['p99']):>10}  {f['p99_ratio'][kind]}  (n={i['n']}/{fl['n']})"
        )
    fr = f["flood_frames"]
    print(
        f"flood: sent {sum(fr['sent'].values())} frames ({fr['frames_per_s']}/s): "
        f"accepted {fr['accepted']}, refused {fr['refused']}, unanswered {fr['unanswered']}"
    )
    for kind, statuses in fr["answered"].items():
        print(f"  {kind:<8} " + ", ".join(f"{s}: {c}" for s, c in statuses.items()))
    print(f"envelopes stored meanwhile: {f['stored']}")
    if f["probe_errors"]:
        print(f"!! probe errors: {f['probe_errors']}")
    if f["closes"]:
        print(f"!! sockets closed by the server: {f['closes']}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


async def bench(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    run = Run(args)
    config = {
        "engine": args.engine,
        "duration": args.duration,
        "rate": args.rate,
        "kinds": args.kinds,
        "probe_rate": args.probe_rate,
    }
    result: dict[str, Any] = {"config": config, "failures": run.failures}
    with tempfile.TemporaryDirectory(prefix="tidings-fairness-") as tmp:
        if not await run.start_or_fail(Path(tmp)):
            return result, 2
        try:
            result["figures"] = await measure(run, args)
            if result["figures"]["probe_errors"]:
                run.failures.append(f"probe errors: {result['figures']['probe_errors']}")
            run.servers_alive()
        except BenchError as exc:
            run.failures.append(str(exc))
        finally:
            await run.close(list(run.conns))
            await run.stop_servers()
    return result, 1 if run.failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--flood-child"]:
        asyncio.run(flood_child(json.loads(argv[1])))
        return 0
    args = parse_args(argv)
    result, code = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        if "figures" in result:
            print_figures(result["figures"], result["config"])
        for failure in result["failures"]:
            print(f"!! {failure}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
