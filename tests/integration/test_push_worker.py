"""The push worker against a real gateway, delivery worker and embedded bus.

Only the provider is scripted (``ScriptedSender``): push jobs come from real offline
deliveries, tokens from the real device API, commits from the real bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from harness import Gateway, register, run_gateway
from push_support import (
    ScriptedSender,
    metric,
    push_providers,
    send_text,
    set_token,
    until,
    until_metric,
)
from tidings.core.push import Outcome, Provider, PushResult
from tidings.core.pushjob import PushPolicy
from tidings.services.context import Context
from tidings.services.push import PushWorker

FCM_TOKEN = "fcm-token:" + "a" * 140


@contextlib.asynccontextmanager
async def push_gateway(
    tmp_path: Path, sender: ScriptedSender, **overrides: Any
) -> AsyncIterator[Gateway]:
    settings: dict[str, Any] = {"push_backoff_base_s": 0.01, **overrides}
    async with run_gateway(
        tmp_path / "data", push_senders={Provider.FCM: sender}, **settings
    ) as gw:
        yield gw


def context_of(gateway: Gateway) -> Context:
    assert gateway.running is not None
    ctx: Context = gateway.running.server.config.app.state.platform.services.ctx
    return ctx


async def test_offline_device_gets_one_content_free_push_for_a_burst(tmp_path: Path) -> None:
    sender = ScriptedSender()
    async with push_gateway(tmp_path, sender) as gw:
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN)
        sent = [await send_text(alice, bob, f"m{i}", f"secret-{i}") for i in range(5)]
        await until_metric(gw, "tidings_push_jobs_total", 5)
        await until(lambda: len(sender.sent) >= 1)
        await asyncio.sleep(0.3)  # the other four jobs collapse (counted below)
        assert await metric(gw, "tidings_pushes_collapsed_total") == 4
        assert await metric(gw, "tidings_pushes_sent_total", provider="fcm") == 1
    assert len(sender.sent) == 1
    message = sender.sent[0]
    assert message.provider is Provider.FCM
    assert message.token == FCM_TOKEN
    assert message.alert is False
    fields = " ".join(str(v) for v in dataclasses.asdict(message).values())
    for leak in [alice.user_id, bob.user_id, alice.phone, bob.phone, "secret", *sent]:
        assert leak not in fields


async def test_alert_preference_reaches_the_provider(tmp_path: Path) -> None:
    sender = ScriptedSender()
    async with push_gateway(tmp_path, sender) as gw:
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN, alert=True)
        await send_text(alice, bob, "m1", "hi")
        await until(lambda: len(sender.sent) == 1)
    assert sender.sent[0].alert is True


async def test_unregistered_token_is_removed_and_never_retried(tmp_path: Path) -> None:
    sender = ScriptedSender([PushResult(Outcome.UNREGISTERED, detail="UNREGISTERED")])
    async with push_gateway(tmp_path, sender, push_collapse_s=0.01) as gw:
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN)
        await send_text(alice, bob, "m0", "first")
        await until_metric(gw, "tidings_push_tokens_removed_total", 1)
        assert (await push_providers(bob))[1] is None
        for i in range(1, 4):
            await send_text(alice, bob, f"m{i}", "later")
        await until_metric(gw, "tidings_pushes_failed_total", 3, reason="no_token")
        assert await metric(gw, "tidings_pushes_failed_total", reason="unregistered") == 1
        assert await metric(gw, "tidings_push_retries_total") == 0
    assert len(sender.sent) == 1


async def test_unregistered_answer_for_a_replaced_token_keeps_the_new_one(tmp_path: Path) -> None:
    gate = asyncio.Event()
    sender = ScriptedSender([PushResult(Outcome.UNREGISTERED)], gate=gate)
    async with push_gateway(tmp_path, sender) as gw:
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN)
        await send_text(alice, bob, "m0", "first")
        await until(lambda: len(sender.sent) == 1)
        await set_token(bob, FCM_TOKEN + "-new")  # the app refreshed its token meanwhile
        gate.set()
        await until_metric(gw, "tidings_pushes_failed_total", 1, reason="unregistered")
        assert await metric(gw, "tidings_push_tokens_removed_total") == 0
        assert (await push_providers(bob))[1] == "fcm"


async def test_retry_twice_then_sent_pushes_exactly_once(tmp_path: Path) -> None:
    sender = ScriptedSender(
        [PushResult(Outcome.RETRY, detail="UNAVAILABLE"), PushResult(Outcome.RETRY, 0.2)]
    )
    async with push_gateway(tmp_path, sender) as gw:
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN)
        await send_text(alice, bob, "m0", "hello")
        await until_metric(gw, "tidings_pushes_sent_total", 1)
        await asyncio.sleep(0.5)  # a duplicate would show up here
        assert await metric(gw, "tidings_pushes_sent_total") == 1
        assert await metric(gw, "tidings_push_retries_total", provider="fcm") == 2
        assert await metric(gw, "tidings_pushes_failed_total") == 0
    assert len(sender.sent) == 3
    assert sender.times[2] - sender.times[1] >= 0.19  # Retry-After 0.2 s was honoured


async def test_retries_stop_at_max_attempts(tmp_path: Path) -> None:
    sender = ScriptedSender([PushResult(Outcome.RETRY)] * 10)
    async with push_gateway(tmp_path, sender, push_max_attempts=3) as gw:
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN)
        await send_text(alice, bob, "m0", "hello")
        await until_metric(gw, "tidings_pushes_failed_total", 1, reason="exhausted")
        assert await metric(gw, "tidings_push_retries_total") == 2
    assert len(sender.sent) == 3


async def test_rejected_push_is_dropped_without_retry(tmp_path: Path) -> None:
    sender = ScriptedSender([PushResult(Outcome.REJECTED, detail="bad credentials")])
    async with push_gateway(tmp_path, sender) as gw:
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN)
        await send_text(alice, bob, "m0", "hello")
        await until_metric(gw, "tidings_pushes_failed_total", 1, reason="rejected")
        assert (await push_providers(bob))[1] == "fcm"  # not the token's fault
    assert len(sender.sent) == 1


async def test_device_without_token_is_dropped_and_another_providers_job_is_skipped(
    tmp_path: Path,
) -> None:
    sender = ScriptedSender()
    async with push_gateway(tmp_path, sender) as gw:
        alice, bob, carol = await register(gw), await register(gw), await register(gw)
        await set_token(carol, "ab" * 32, provider="apns")  # this pool only pushes FCM
        await send_text(alice, bob, "m0", "hello")
        await send_text(alice, carol, "m1", "hello")
        await until_metric(gw, "tidings_pushes_failed_total", 1, reason="no_token")
        await until_metric(gw, "tidings_push_jobs_skipped_total", 1)  # the APNs pool's
    assert sender.sent == []


async def test_online_device_gets_no_push(tmp_path: Path) -> None:
    sender = ScriptedSender()
    async with push_gateway(tmp_path, sender) as gw:
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN)
        sock = await bob.connect()
        await send_text(alice, bob, "m0", "hello")
        await sock.deliveries(1)
        await sock.close()
        assert await metric(gw, "tidings_push_jobs_total") == 0
    assert sender.sent == []


async def test_killed_worker_leaves_its_job_to_the_next_one(tmp_path: Path) -> None:
    stuck = ScriptedSender(gate=asyncio.Event())  # never answers
    healthy = ScriptedSender()
    # No push component: this test runs the workers itself.
    async with run_gateway(tmp_path / "data", components=("gateway", "delivery")) as gw:
        ctx = context_of(gw)
        alice, bob = await register(gw), await register(gw)
        await set_token(bob, FCM_TOKEN)

        first = asyncio.create_task(PushWorker(ctx, {Provider.FCM: stuck}).run(asyncio.Event()))
        await send_text(alice, bob, "m0", "hello")
        await until(lambda: len(stuck.sent) == 1)
        first.cancel()  # killed mid-send: nothing was committed for this job
        with contextlib.suppress(asyncio.CancelledError):
            await first

        for _ in range(2):  # the second worker sends it; a third finds nothing left
            stop = asyncio.Event()
            worker = PushWorker(ctx, {Provider.FCM: healthy}, PushPolicy(collapse_s=0.01))
            task = asyncio.create_task(worker.run(stop))
            await until(lambda: len(healthy.sent) >= 1)
            await asyncio.sleep(0.5)
            stop.set()
            await task
        assert await metric(gw, "tidings_pushes_sent_total") == 1
    assert len(healthy.sent) == 1
    assert healthy.sent[0].token == FCM_TOKEN
