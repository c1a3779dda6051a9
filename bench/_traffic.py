"""The message phases' bookkeeping: what was sent, accepted, delivered and receipted, and
the senders that keep a window of sends in flight."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from _client import RETRY_STATUSES, Closed, Conn, Sink, error_text

HEADER = struct.Struct("<IId")
"""The first bytes of every message: sender index, sequence number, send time
(``time.perf_counter()`` of the load generator, which is one process)."""
HEADER_B64 = 4 * ((HEADER.size + 2) // 3)
"""Base64 characters that cover the header."""
SEND_ATTEMPTS = 10


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
    conn: Conn,
    sender: int,
    to_user: str,
    count: int,
    window: int,
    size: int,
    traffic: Traffic,
    rate: float | None = None,
) -> None:
    """``count`` messages to ``to_user``'s device 1, at most ``window`` awaiting an answer.

    With ``rate`` (messages per second), message ``n`` is due ``n / rate`` seconds after
    the start and its latency counts from then, so a sender held back by its window (a
    server falling behind) shows in the latency instead of slowing the clock down.
    Answers 429/503 are retried (same client id, same bytes) after a short pause."""
    next_seq = 0
    filler = max(0, size - HEADER.size)
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal next_seq
        while next_seq < count and not conn.closed:
            seq = next_seq
            next_seq += 1
            traffic.attempted += 1
            due = time.perf_counter()
            if rate is not None:
                due = start + seq / rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
            payload = HEADER.pack(sender, seq, due) + os.urandom(filler)
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
