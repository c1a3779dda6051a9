"""The presence reaper and the analytics pipeline, on the embedded engines.

The same services run on Redis and Kafka in the distributed suite; here a fake clock
drives presence expiry, and the analytics worker runs in the gateway's process.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from harness import Gateway, ciphertexts, online, register
from tidings.bootstrap import build
from tidings.config import Settings
from tidings.services.context import presence_channel
from tidings.services.presence import PresenceService


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_device_whose_gateway_died_is_announced_offline_once(tmp_path: Path) -> None:
    clock = Clock()
    platform = build(Settings(data_dir=tmp_path), clock=clock)
    ctx = platform.services.ctx
    for start in platform.engines.starters:
        await start()
    try:
        follower = await ctx.channels.subscribe(presence_channel("bob"))
        # bob's gateway set him online, then died: no set_offline will ever come.
        await ctx.presence.set_online("bob", 1, ttl=180)
        await ctx.presence.set_online("carol", 1, ttl=180)
        await ctx.presence.set_offline("carol", 1, clock.now)  # a clean disconnect
        reaper = PresenceService(ctx)
        assert await reaper.reap_once() == 0

        clock.now += 181
        assert await reaper.reap_once() == 1
        assert await reaper.reap_once() == 0
        updates = aiter(follower)
        update = json.loads(await asyncio.wait_for(anext(updates), 5))
        assert update == {"user": "bob", "online": False, "last_seen": clock.now - 1}
        await follower.close()
        assert ctx.metrics.presence_reaped._value.get() == 1
    finally:
        for close in reversed(platform.engines.closers):
            await close()


async def _daily(gateway: Gateway, want: dict[str, float]) -> dict[str, dict[str, float]]:
    """Poll the analytics endpoint until every ``event.kind`` count reaches ``want``."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    async with gateway.ops_http() as http:
        async with asyncio.timeout(20):
            while True:
                r = await http.get(f"/analytics/daily/{day}")
                assert r.status_code == 200, r.text
                found: dict[str, dict[str, float]] = r.json()
                if all(found.get(k, {}).get("count", 0) >= n for k, n in want.items()):
                    return found
                await asyncio.sleep(0.2)


async def test_analytics_counts_sends_stores_and_acks_without_content(gateway: Gateway) -> None:
    alice, bob = await register(gateway), await register(gateway)
    bob_ws = await online(bob)
    alice_ws = await online(alice)
    secret = "attack at dawn"
    for i in range(3):
        reply = await alice_ws.request(
            "send",
            {
                "id": f"m{i}",
                "to": {"user": bob.user_id},
                "ciphertexts": ciphertexts({bob.user_id: [1]}, secret),
            },
        )
        assert reply["status"] == 200, reply
    assert len(await bob_ws.deliveries(3)) == 3  # each acked as it arrives

    daily = await _daily(
        gateway, {"accepted.direct": 3, "stored.message": 3, "delivered.message": 3}
    )
    accepted = daily["accepted.direct"]
    assert accepted["bytes"] > 0
    assert daily["delivered.message"]["latency_ms_mean"] >= 0
    rendered = json.dumps(daily)
    for leak in (alice.user_id, bob.user_id, secret):
        assert leak not in rendered
    async with gateway.ops_http() as http:
        # The worker writes the aggregates, then counts the same events in its metrics.
        async with asyncio.timeout(10):
            while True:
                metrics = (await http.get("/metrics")).text
                if 'event="delivered"' in metrics:
                    break
                await asyncio.sleep(0.1)
        bad = await http.get("/analytics/daily/yesterday")
    assert 'tidings_analytics_events_total{event="accepted",kind="direct"} 3.0' in metrics
    assert bad.status_code == 422  # the path's pattern: YYYY-MM-DD
    assert bad.json()["error"]["code"] == "invalid_input"
    await alice_ws.close()
    await bob_ws.close()
