"""The push worker: push jobs -> one content-free push per offline device.

Each job (``core.pushjob.PushJob``) runs as its own task: look up the device's token
(none: dropped), claim the device's collapse window (``put_if_absent`` with TTL
``collapse_s``; a burst of messages gives one push), take a token from the provider's
bucket (shared by every worker of the pool), then send under the concurrency cap.
Outcomes: SENT done; UNREGISTERED removes the token (only if it is still the one
sent to) and never retries; REJECTED is logged and dropped; RETRY re-enqueues.

Retries and commits (nothing is lost on SIGKILL):

- A RETRY is re-enqueued durably: a record ``{..., attempt + 1, not_before}`` is
  produced to the push topic (same key, so the same partition), and only then is the
  original job finished. The delay is ``core.push.retry_delay`` (Retry-After wins).
- Offsets are committed per partition only up to the oldest unfinished job
  (``core.offsets.OffsetTracker``): jobs finish in any order, a slow or waiting job
  never blocks the others, and a commit never covers a job that is neither done nor
  re-enqueued. A kill at any point replays only uncommitted jobs: at-least-once.
- A record whose ``not_before`` is ahead waits in its task (uncommitted, so it is
  replayed after a crash). A wait longer than ``max_hold_s`` (a long Retry-After)
  is cut: after ``max_hold_s`` the record is produced again and this copy finishes,
  so a partition's commits stall at most ``max_hold_s``.
- A replayed job still owns its collapse window (the window's value is its server
  id), so a crash between claim and send does not swallow the push; after a send the
  value becomes ``sent:<id>``, so a replay within the window does not push twice.

Other workers of the group take the partitions of a killed one and replay from its
last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping

from tidings.aio import KeyedLocks
from tidings.core.model import PushToken
from tidings.core.offsets import OffsetTracker
from tidings.core.push import Outcome, Provider, PushMessage, PushResult
from tidings.core.pushjob import (
    SENT_MARK,
    Action,
    Claim,
    PushJob,
    PushPolicy,
    claim,
    collapse_key,
    next_step,
)
from tidings.core.ratelimit import Limit
from tidings.core.shardmap import push_consumer_group, push_topic
from tidings.errors import TidingsError
from tidings.ports import Consumer, PushSender, Record
from tidings.services.context import Context

log = logging.getLogger("tidings.push")


class PushWorker:
    def __init__(
        self,
        ctx: Context,
        senders: Mapping[Provider, PushSender],
        policy: PushPolicy | None = None,
        *,
        batch: int = 128,
        max_in_flight: int = 4096,
        max_hold_s: float = 30.0,
        drain_s: float = 2.0,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.ctx, self.senders = ctx, dict(senders)
        self.policy = policy or PushPolicy()
        self.batch, self.max_in_flight = batch, max_in_flight
        self.max_hold_s, self.drain_s, self.jitter = max_hold_s, drain_s, jitter
        self.topic = push_topic(ctx.region)
        self._slots = asyncio.Semaphore(self.policy.concurrency)
        self._limit = Limit(self.policy.rate, self.policy.burst)
        self._unsent_commits: dict[int, Record] = {}
        self._device_lock: KeyedLocks[tuple[str, int]] = KeyedLocks()

    # the consume loop ----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        ctx = self.ctx
        group = push_consumer_group(ctx.region, (p.value for p in self.senders))
        consumer = ctx.bus.consumer(self.topic, group)
        tracker: OffsetTracker[Record] = OffsetTracker()
        tasks: set[asyncio.Task[None]] = set()
        progress = asyncio.Event()

        def finished(record: Record, task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not task.cancelled():  # a cancelled job is not done: leave it uncommitted
                tracker.done(record.partition, record.offset)
            progress.set()

        log.info("push worker consuming %s (providers: %s)", self.topic, sorted(self.senders))
        try:
            while not stop.is_set():
                if tracker.in_flight >= self.max_in_flight:
                    progress.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            await progress.wait()
                else:
                    for record in await self._poll(consumer):
                        if tracker.add(record.partition, record.offset, record):
                            task = asyncio.create_task(self._job(record))
                            tasks.add(task)
                            task.add_done_callback(functools.partial(finished, record))
                await self._commit(consumer, tracker)
            if tasks:  # graceful stop: let sends in progress finish
                await asyncio.wait(set(tasks), timeout=self.drain_s)
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(TidingsError):
                await self._commit(consumer, tracker)
            await consumer.close()

    async def _poll(self, consumer: Consumer) -> list[Record]:
        try:
            return await consumer.poll(self.batch, timeout=0.25)
        except TidingsError as exc:
            if not exc.retryable:
                raise
            log.warning("push poll failed, retrying: %s", exc.message)
            await asyncio.sleep(1.0)
            return []

    async def _commit(self, consumer: Consumer, tracker: OffsetTracker[Record]) -> None:
        """Commit what is finished."""
        for partition, record in tracker.ready().items():
            held = self._unsent_commits.get(partition)
            if held is None or held.offset < record.offset:
                self._unsent_commits[partition] = record
        if not self._unsent_commits:
            return
        try:
            await consumer.commit(list(self._unsent_commits.values()))
        except TidingsError as exc:
            if not exc.retryable:
                raise
            # Not kept for the next commit: if the partitions moved, their new owner
            # replays the jobs (collapse marks stop a second push), and an old offset
            # committed later could move the group backwards.
            log.warning("push commit refused, the jobs may run again: %s", exc.message)
        self._unsent_commits.clear()

    # one job ---------------------------------------------------------------------------
    async def _job(self, record: Record) -> None:
        """Run one job to its end: done, dropped or re-enqueued (never raises)."""
        try:
            job = PushJob.decode(record.value)
        except ValueError as exc:
            log.warning("dropping push record %s/%s: %s", record.partition, record.offset, exc)
            self.ctx.metrics.pushes_failed.labels("invalid_job").inc()
            return
        while True:
            try:
                await self._handle(job)
                return
            except TidingsError as exc:
                if not exc.retryable:
                    log.error("push job for %s/%s failed: %s", job.user, job.device, exc)
                    self.ctx.metrics.pushes_failed.labels("error").inc()
                    return
                log.warning("push job failed, retrying: %s", exc.message)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("push job for %s/%s crashed; dropped", job.user, job.device)
                self.ctx.metrics.pushes_failed.labels("error").inc()
                return

    async def _handle(self, job: PushJob) -> None:
        ctx, metrics = self.ctx, self.ctx.metrics
        wait = job.not_before - ctx.clock()
        if wait > self.max_hold_s:
            await asyncio.sleep(self.max_hold_s)
            await self._enqueue(job)  # still early: park it again further down the log
            return
        if wait > 0:
            await asyncio.sleep(wait)
        token = await ctx.push_tokens.get_push_token(job.user, job.device)
        if token is None:
            metrics.pushes_failed.labels("no_token").inc()
            return
        sender = self.senders.get(token.provider)
        if sender is None:  # the pool of that provider reads this job too (its own group)
            metrics.push_jobs_skipped.inc()
            return
        # One push at a time per device in this process: a replayed job and its retry
        # record (both alive after a crash) must not both pass the collapse claim.
        async with self._device_lock((job.user, job.device)):
            window = f"push-collapse:{job.user}:{job.device}"
            existing = await ctx.keys.put_if_absent(
                window, job.server_id.encode(), self.policy.collapse_s
            )
            if claim(existing, job.server_id) is Claim.COLLAPSED:
                metrics.pushes_collapsed.inc()
                return
            result = await self._send(sender, token, job)
            step = next_step(result, job, self.policy, self.jitter() if self.jitter else None)
            provider = token.provider.value
            if step.action is Action.DONE:
                metrics.pushes_sent.labels(provider).inc()
                ctx.emit("push", f"{provider}:sent")
                await ctx.keys.set(
                    window, SENT_MARK + job.server_id.encode(), self.policy.collapse_s
                )
            elif step.action is Action.RETRY:
                metrics.push_retries.labels(provider).inc()
                await self._enqueue(job.retry_at(ctx.clock() + step.delay))
            else:
                if step.action is Action.REMOVE_TOKEN and await ctx.push_tokens.remove_push_token(
                    job.user, job.device, token.token
                ):
                    metrics.push_tokens_removed.inc()
                log.info(
                    "push to %s/%s via %s dropped (%s): %s",
                    job.user,
                    job.device,
                    provider,
                    step.reason,
                    result.detail,
                )
                metrics.pushes_failed.labels(step.reason).inc()
                ctx.emit("push", f"{provider}:{step.reason}")

    async def _enqueue(self, job: PushJob) -> None:
        await self.ctx.bus.produce(self.topic, [(job.user, job.encode())])

    async def _send(self, sender: PushSender, token: PushToken, job: PushJob) -> PushResult:
        message = PushMessage(
            provider=token.provider,
            token=token.token,
            collapse_key=collapse_key(job.user, job.device),
            alert=token.alert,
            ttl_s=self.policy.ttl_s,
        )
        async with self._slots:
            await self._take(token.provider)
            started = time.perf_counter()
            try:
                return await sender.send(message)
            except Exception as exc:
                # Transport failures the client did not map: treat like a provider 5xx.
                log.warning("push send via %s raised %r; will retry", token.provider, exc)
                return PushResult(Outcome.RETRY, detail=f"send raised {exc!r}")
            finally:
                elapsed = time.perf_counter() - started
                self.ctx.metrics.push_seconds.labels(token.provider.value).observe(elapsed)

    async def _take(self, provider: Provider) -> None:
        """Wait for a token of the pool's bucket for ``provider``."""
        ctx = self.ctx
        key = f"push-rate:{ctx.region}:{provider.value}"
        while True:
            decision = await ctx.buckets.take_token(key, self._limit, ctx.clock())
            if decision.allowed:
                return
            await asyncio.sleep(min(decision.retry_after, 1.0))
