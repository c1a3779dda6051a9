"""Message-path benchmark: accept latency, end-to-end latency and throughput.

Starts ``tidings up`` on a temporary data directory (embedded engines), registers
``--pairs`` sender/recipient pairs, and has every sender push ``--messages`` messages
over its WebSocket while the recipients ack. Prints figures; asserts nothing.

    .venv/bin/python bench/message_path.py --pairs 10 --messages 200
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

TIDINGS = str(Path(sys.executable).with_name("tidings"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def start(data: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = dict(os.environ, TIDINGS_LOG_LEVEL="warning")
    proc = await asyncio.create_subprocess_exec(
        TIDINGS,
        "up",
        "--port",
        "0",
        "--data-dir",
        str(data),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise SystemExit("tidings up exited during start-up")
        if m := re.search(r"is up: (http://\S+)", line):
            return proc, m.group(1)


async def register(http: httpx.AsyncClient, data: Path, phone: str) -> dict[str, str]:
    (await http.post("/v1/auth/code", json={"phone": phone})).raise_for_status()
    code = ""
    for line in (data / "otp-outbox.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["phone"] == phone:
            code = entry["code"]
    r = await http.post(
        "/v1/auth/register", json={"phone": phone, "code": code, "registration_id": 1}
    )
    r.raise_for_status()
    tokens: dict[str, str] = r.json()
    return tokens


async def connect(url: str, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        url.replace("http", "ws") + "/v1/ws",
        additional_headers={"Authorization": f"Bearer {token}"},
    )
    while json.loads(await ws.recv()).get("type") != "queue-empty":
        pass
    return ws


async def sender(
    ws: websockets.ClientConnection,
    to: str,
    count: int,
    size: int,
    accept: list[float],
    sent_at: dict[str, float],
) -> None:
    pending: dict[str, float] = {}
    body = base64.b64encode(os.urandom(size)).decode()
    for i in range(count):
        rid = f"r{i}"
        pending[rid] = time.perf_counter()
        frame = {
            "id": rid,
            "type": "send",
            "body": {
                "id": f"{to}-{i}",
                "to": {"user": to},
                "ciphertexts": {to: [{"device": 1, "body": body}]},
            },
        }
        await ws.send(json.dumps(frame))
        if len(pending) >= 16:  # keep a bounded window of unanswered sends
            await _answers(ws, pending, accept, sent_at, 1)
    await _answers(ws, pending, accept, sent_at, len(pending))


async def _answers(
    ws: websockets.ClientConnection,
    pending: dict[str, float],
    accept: list[float],
    sent_at: dict[str, float],
    n: int,
) -> None:
    while n > 0:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "response" and frame["id"] in pending:
            started = pending.pop(frame["id"])
            if frame["status"] != 200:
                raise SystemExit(f"send refused: {frame}")
            accept.append(time.perf_counter() - started)
            sent_at[frame["body"]["server_id"]] = started
            n -= 1


async def receiver(
    ws: websockets.ClientConnection, count: int, sent_at: dict[str, float], e2e: list[float]
) -> None:
    got = 0
    while got < count:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "deliver" and frame["body"]["type"] == "message":
            now = time.perf_counter()
            await ws.send(json.dumps({"id": frame["id"], "type": "response", "status": 200}))
            started = sent_at.get(frame["body"]["server_id"])
            if started is not None:
                e2e.append(now - started)
            got += 1


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--size", type=int, default=256, help="ciphertext bytes per message")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        proc, url = await start(data)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                users = [await register(http, data, f"+1999{i:07d}") for i in range(2 * args.pairs)]
            senders = [await connect(url, u["access_token"]) for u in users[: args.pairs]]
            receivers = [await connect(url, u["access_token"]) for u in users[args.pairs :]]
            accept: list[float] = []
            e2e: list[float] = []
            sent_at: dict[str, float] = {}
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    sender(
                        ws,
                        users[args.pairs + i]["user_id"],
                        args.messages,
                        args.size,
                        accept,
                        sent_at,
                    )
                    for i, ws in enumerate(senders)
                ),
                *(receiver(ws, args.messages, sent_at, e2e) for ws in receivers),
            )
            elapsed = time.perf_counter() - started
            total = args.pairs * args.messages
            print(
                f"messages          {total} ({args.pairs} pairs x {args.messages}, {args.size} B)"
            )
            print(f"throughput        {total / elapsed:,.0f} msg/s delivered and acked")
            print(
                f"accept latency    p50 {pct(accept, 0.5):.1f} ms  p99 {pct(accept, 0.99):.1f} ms"
            )
            print(
                f"end-to-end        p50 {pct(e2e, 0.5):.1f} ms  p99 {pct(e2e, 0.99):.1f} ms"
                f"  (mean {statistics.mean(e2e) * 1000:.1f} ms)"
            )
            print(f"server RSS        {rss_mib(proc.pid):.0f} MiB")
            for ws in senders + receivers:
                await ws.close()
        finally:
            proc.terminate()
            await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
