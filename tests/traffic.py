"""Steady message traffic that counts what was lost and duplicated, for fault tests.

Senders post messages over REST, retrying a refused or failed send with the same client
id (the server's dedupe makes that safe) until it is accepted; only a 200 counts as
accepted. Receivers hold a WebSocket each, ack every delivery, and when their socket
dies they reconnect to the next gateway. At the end:

- lost: accepted server ids that never reached their receiver;
- duplicates: messages a user would see twice: one sent message (its payload) delivered
  under two server ids (a client dedupes by server id, so only this reaches the screen);
- redelivered: deliveries of a server id the receiver had already been given (the
  at-least-once redeliveries a client's dedupe absorbs, e.g. after an ack died with its
  gateway);
- refused: send attempts answered 5xx / 429 or that failed to connect (then retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import websockets

from harness import Device, Gateway, body_text, ciphertexts

log = logging.getLogger("tests.traffic")

PING_EVERY_S = 2.0
"""Receivers' heartbeat: well inside the deployments' heartbeat timeout."""


@dataclass
class Tally:
    accepted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    received: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    payloads: dict[str, dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    """receiver -> payload -> the server ids it arrived under"""
    refused: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    closes: Counter[str] = field(default_factory=Counter)
    """Why receivers' sockets ended (close code or error), for the summary."""

    @property
    def sent(self) -> int:
        return sum(len(ids) for ids in self.accepted.values())

    def missing(self) -> dict[str, set[str]]:
        return {
            user: ids - set(self.received[user])
            for user, ids in self.accepted.items()
            if ids - set(self.received[user])
        }

    @property
    def lost(self) -> int:
        return sum(len(ids) for ids in self.missing().values())

    @property
    def duplicates(self) -> int:
        return sum(len(ids) - 1 for payloads in self.payloads.values() for ids in payloads.values())

    @property
    def redelivered(self) -> int:
        return sum(len(ids) - len(set(ids)) for ids in self.received.values())

    def summary(self) -> str:
        return (
            f"accepted {self.sent}, lost {self.lost}, duplicates {self.duplicates}, "
            f"redelivered {self.redelivered}, "
            f"refused-and-retried {sum(self.refused.values())} {dict(self.refused)}, "
            f"reconnects {self.reconnects} {dict(self.closes)}"
        )


class Receiver:
    """One device on a socket; moves to the next gateway whenever the socket dies."""

    def __init__(self, device: Device, gateways: Sequence[Gateway], tally: Tally) -> None:
        self.device, self.gateways, self.tally = device, list(gateways), tally
        self.index = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            gateway = self.gateways[self.index % len(self.gateways)]
            try:
                await self._session(gateway, stop)
            except websockets.ConnectionClosed as exc:
                self.tally.closes[str(exc.rcvd.code if exc.rcvd else "no-close-frame")] += 1
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                self.tally.closes[type(exc).__name__] += 1
                log.info("receiver %s lost %s: %r", self.device.user_id, gateway.url, exc)
            if stop.is_set():
                return
            self.tally.reconnects += 1
            self.index += 1
            await asyncio.sleep(0.2)

    async def _session(self, gateway: Gateway, stop: asyncio.Event) -> None:
        async with websockets.connect(
            gateway.ws_url,
            additional_headers={"Authorization": f"Bearer {self.device.access_token}"},
            open_timeout=5,
        ) as ws:
            last_ping = time.monotonic()
            while not stop.is_set():
                if time.monotonic() - last_ping > PING_EVERY_S:  # as real clients do
                    await ws.send(json.dumps({"id": "keepalive", "type": "ping"}))
                    last_ping = time.monotonic()
                try:
                    async with asyncio.timeout(0.5):
                        raw = await ws.recv()
                except TimeoutError:
                    continue
                frame = json.loads(raw)
                if frame.get("type") == "deliver":
                    body = frame["body"]
                    if body.get("type") == "message":
                        me, server_id = self.device.user_id, body["server_id"]
                        self.tally.received[me].append(server_id)
                        self.tally.payloads[me][body_text(body)].add(server_id)
                    await ws.send(
                        json.dumps({"id": frame["id"], "type": "response", "status": 200})
                    )


class Sender:
    """Sends to ``targets`` in turn at ``rate`` messages per second, over REST."""

    _ids = itertools.count(1)

    def __init__(
        self,
        device: Device,
        targets: Sequence[Device],
        gateways: Sequence[Gateway],
        tally: Tally,
        rate: float,
    ) -> None:
        self.device, self.targets, self.gateways = device, list(targets), list(gateways)
        self.tally, self.rate = tally, rate

    async def run(self, stop: asyncio.Event) -> None:
        targets = itertools.cycle(self.targets)
        gateways = itertools.cycle(self.gateways)
        next_at = time.monotonic()
        while not stop.is_set():
            target = next(targets)
            client_id = f"load-{next(self._ids)}"
            body = {
                "id": client_id,
                "to": {"user": target.user_id},
                "ciphertexts": ciphertexts({target.user_id: [target.device_id]}, client_id),
            }
            server_id = await self._send_until_accepted(body, gateways)
            self.tally.accepted[target.user_id].add(server_id)
            next_at += 1 / self.rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _send_until_accepted(
        self, body: dict[str, object], gateways: itertools.cycle[Gateway]
    ) -> str:
        """Retry (same client id, next gateway) until accepted; never gives up, since a
        send that was accepted and then lost is exactly what the tests look for."""
        headers = {"Authorization": f"Bearer {self.device.access_token}"}
        while True:
            gateway = next(gateways)
            try:
                async with httpx.AsyncClient(
                    base_url=gateway.url, headers=headers, timeout=10.0
                ) as http:
                    r = await http.post("/v1/messages", json=body)
            except httpx.ConnectError as exc:
                self.tally.refused[type(exc).__name__] += 1
                continue  # a process that is gone: the next one at once
            except httpx.HTTPError as exc:
                self.tally.refused[type(exc).__name__] += 1
            else:
                if r.status_code == 200:
                    server_id: str = r.json()["server_id"]
                    return server_id
                assert r.status_code in (429, 500, 502, 503, 504), r.text
                self.tally.refused[str(r.status_code)] += 1
            await asyncio.sleep(0.25)


@dataclass
class Traffic:
    senders: list[Sender]
    receivers: list[Receiver]
    tally: Tally
    stop_sending: asyncio.Event = field(default_factory=asyncio.Event)
    stop_receiving: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks += [asyncio.create_task(r.run(self.stop_receiving)) for r in self.receivers]
        self.tasks += [asyncio.create_task(s.run(self.stop_sending)) for s in self.senders]

    async def finish(self, settle_timeout: float = 60.0) -> Tally:
        """Stop sending, wait until nothing is missing (or the timeout), stop receiving."""
        self.stop_sending.set()
        senders = self.tasks[len(self.receivers) :]
        await asyncio.gather(*senders)
        deadline = time.monotonic() + settle_timeout
        while time.monotonic() < deadline:
            if not self.tally.lost:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # let late duplicates show up
        self.stop_receiving.set()
        for task in self.tasks:
            if not task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return self.tally


def traffic(
    senders: Sequence[Device],
    receivers: Sequence[Device],
    gateways: Sequence[Gateway],
    rate_per_sender: float = 10.0,
) -> Traffic:
    tally = Tally()
    spread = [gateways[i:] + gateways[:i] for i in range(len(gateways))]
    return Traffic(
        senders=[
            Sender(device, receivers, spread[i % len(spread)], tally, rate_per_sender)
            for i, device in enumerate(senders)
        ],
        receivers=[
            Receiver(device, spread[i % len(spread)], tally) for i, device in enumerate(receivers)
        ],
        tally=tally,
    )
