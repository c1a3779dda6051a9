"""The run behind ``tidings bench load``: plan, set up, warm up, send on schedule, drain.

In e2ee mode a warm-up first opens every 1:1 session the schedule will use (the lower
device initiates, the other receives before anyone replies: two devices initiating at
once would each replace the other's session) and hands out the sender key of every
group sender; warm-up messages are not counted in the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tidings.client.http import ApiError
from tidings.client.loadreport import Phases, Tally, TallySink, payload, summary
from tidings.client.loadsim import LoadError, OtpOutbox, RawDevice, SdkDevice, SimDevice

log = logging.getLogger("tidings.loadgen")

REGISTER_CONCURRENCY = 8
WARMUP_ATTEMPTS = 30


@dataclass(frozen=True)
class LoadConfig:
    """What to run: see ``tidings bench load --help`` for each field."""

    servers: tuple[str, ...]
    """Gateways; device ``i`` uses ``servers[i % len(servers)]``."""
    clients: int
    rate: float
    duration: float
    groups: int
    group_size: int
    group_share: float
    e2ee: bool
    outbox: Path
    drain_timeout: float
    seed: int


@dataclass(frozen=True)
class Planned:
    """One scheduled message: who sends it, to whom, and which devices must get it."""

    message_id: str
    due: float
    sender: int
    user: int | None
    group: int | None
    recipients: frozenset[int]


def plan(config: LoadConfig) -> tuple[list[list[int]], list[Planned]]:
    """Groups (member indices, creator first) and the whole schedule, from the seed."""
    rng = random.Random(config.seed)
    n = config.clients
    groups = [rng.sample(range(n), min(config.group_size, n)) for _ in range(config.groups)]
    out: list[Planned] = []
    for k in range(max(1, round(config.rate * config.duration))):
        due = k / config.rate
        if groups and rng.random() < config.group_share:
            g = rng.randrange(len(groups))
            sender = rng.choice(groups[g])
            others = frozenset(groups[g]) - {sender}
            out.append(Planned(f"m{k}", due, sender, None, g, others))
        else:
            sender = rng.randrange(n)
            to = rng.randrange(n - 1)
            to += to >= sender
            out.append(Planned(f"m{k}", due, sender, to, None, frozenset({to})))
    return groups, out


class LoadRun:
    """One run: set up devices and groups, warm up, send on schedule, drain, report."""

    def __init__(self, config: LoadConfig, work: Path, tally: Tally | None = None) -> None:
        self.config = config
        self.tally = tally if tally is not None else Tally()
        self.phases = Phases()
        sink = TallySink(self.tally)
        self.devices: list[SimDevice] = [
            SdkDevice(i, sink, config.servers[i % len(config.servers)], work / f"device-{i}.db")
            if config.e2ee
            else RawDevice(i, sink, config.servers[i % len(config.servers)])
            for i in range(config.clients)
        ]
        self.group_ids: list[str] = []
        self._warm = 0

    async def run(self) -> dict[str, Any]:
        groups, schedule = plan(self.config)
        ids = [p.message_id for p in schedule]
        try:
            await self.setup(groups)
            self.phases.registered = time.time()
            if self.config.e2ee:
                await self.warm_up(groups, schedule)
            self.phases.warmed = time.time()
            await self.load(schedule)
            await self.drain(ids, self.config.drain_timeout)
            self.phases.drained = time.time()
        finally:
            await self.close()
        redeliveries = sum(d.redeliveries for d in self.devices)
        config = asdict(self.config) | {"outbox": str(self.config.outbox)}
        return summary(config, self.tally, ids, self.phases, redeliveries)

    async def close(self) -> None:
        """Stop every device (sockets, stores)."""
        await asyncio.gather(*(d.close() for d in self.devices), return_exceptions=True)

    async def setup(self, groups: list[list[int]]) -> None:
        outbox = OtpOutbox(self.config.outbox)
        prefix = f"+1999{secrets.randbelow(10**6):06d}"  # fresh accounts every run
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def one(device: SimDevice) -> None:
            async with gate:
                try:
                    await device.register(f"{prefix}{device.index:05d}", outbox)
                except ApiError as exc:
                    raise LoadError(f"registering device {device.index}: {exc}") from exc
                await device.start()

        await asyncio.gather(*(one(d) for d in self.devices))
        for g, members in enumerate(groups):
            creator, *rest = (self.devices[i] for i in members)
            self.group_ids.append(
                await creator.create_group(f"load-{g}", [d.user_id for d in rest])
            )

    async def _retrying(self, send: Callable[[], Awaitable[None]]) -> bool:
        """Warm-up sends wait out rate limits (429) instead of failing."""
        for _ in range(WARMUP_ATTEMPTS):
            try:
                await send()
                return True
            except ApiError as exc:
                if exc.status != 429:
                    self.tally.error(f"warm_up_{exc.code}")
                    return False
            await asyncio.sleep(1.0)
        self.tally.error("warm_up_rate_limited")
        return False

    def _warm_id(self, recipients: set[int]) -> str:
        self._warm += 1
        message_id = f"w{self._warm}"
        self.tally.expect(message_id, recipients)
        return message_id

    async def warm_up(self, groups: list[list[int]], schedule: list[Planned]) -> None:
        pairs: set[tuple[int, int]] = set()
        senders: set[tuple[int, int]] = set()
        for p in schedule:
            if p.group is None:
                assert p.user is not None
                pairs.add((min(p.sender, p.user), max(p.sender, p.user)))
            else:
                senders.add((p.group, p.sender))
                pairs.update((min(p.sender, r), max(p.sender, r)) for r in p.recipients)
        by_sender: dict[int, list[int]] = {}
        for a, b in sorted(pairs):
            by_sender.setdefault(a, []).append(b)

        async def direct(a: int, targets: list[int]) -> list[str]:
            sent = []
            for b in targets:
                message_id = self._warm_id({b})
                text = payload(message_id, time.time())
                user = self.devices[b].user_id
                if await self._retrying(partial(self.devices[a].send_direct, user, text)):
                    self.tally.accept(message_id, 0.0)
                    sent.append(message_id)
            return sent

        async def group(a: int, gs: list[int]) -> list[str]:
            sent = []
            for g in gs:
                message_id = self._warm_id(set(groups[g]) - {a})
                text = payload(message_id, time.time())
                gid = self.group_ids[g]
                if await self._retrying(partial(self.devices[a].send_group, gid, text)):
                    self.tally.accept(message_id, 0.0)
                    sent.append(message_id)
            return sent

        done = await asyncio.gather(*(direct(a, bs) for a, bs in by_sender.items()))
        await self.drain([m for ms in done for m in ms], 30.0, "warm_up_lost")
        by_group_sender: dict[int, list[int]] = {}
        for g, a in sorted(senders):
            by_group_sender.setdefault(a, []).append(g)
        done = await asyncio.gather(*(group(a, gs) for a, gs in by_group_sender.items()))
        await self.drain([m for ms in done for m in ms], 30.0, "warm_up_lost")

    async def _send(self, p: Planned, sent_at: float) -> None:
        device = self.devices[p.sender]
        text = payload(p.message_id, sent_at)
        try:
            if p.group is not None:
                await device.send_group(self.group_ids[p.group], text)
            else:
                assert p.user is not None
                await device.send_direct(self.devices[p.user].user_id, text)
        except ApiError as exc:
            self.tally.error(f"send_{exc.code}")
        except Exception as exc:  # a load generator counts failures and carries on
            log.warning("send %s failed: %r", p.message_id, exc)
            self.tally.error(f"send_{type(exc).__name__}")
        else:
            self.tally.accept(p.message_id, time.time() - sent_at)

    async def load(self, schedule: list[Planned]) -> None:
        loop = asyncio.get_running_loop()
        for p in schedule:
            self.tally.expect(p.message_id, p.recipients)
        start, wall = loop.time() + 0.1, time.time() + 0.1
        self.phases.load_start = wall
        tasks: set[asyncio.Task[None]] = set()
        for p in schedule:
            delay = start + p.due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.phases.scheduler_lag = max(self.phases.scheduler_lag, -delay)
            # Latency counts from the scheduled time: a backed-up sender shows up in it.
            tasks.add(asyncio.create_task(self._send(p, wall + p.due)))
        _, late = await asyncio.wait(tasks, timeout=self.config.drain_timeout + 30.0)
        for task in late:
            task.cancel()
            self.tally.error("send_timeout")
        await asyncio.gather(*late, return_exceptions=True)
        self.phases.sends_done = time.time()

    async def drain(self, ids: list[str], timeout: float, lost_kind: str = "") -> None:
        """Wait until every accepted copy of ``ids`` arrived, or ``timeout`` passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (missing := self.tally.missing(ids)) and (left := deadline - loop.time()) > 0:
            self.tally.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await self.tally.arrived.wait()
        if missing and lost_kind:
            self.tally.errors[lost_kind] += missing
