"""Delivery semantics over real sockets: offline queues, ordering, the in-flight window,
redelivery of unacked messages, idempotent sends, prekey claiming, socket takeover and
ephemeral typing signals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from harness import (
    Device,
    Gateway,
    body_text,
    ciphertexts,
    inbox_writes,
    next_frame,
    online,
    register,
    run_gateway,
    settle,
    until_stored,
)
from tidings.core import wsproto
from tidings.core.model import InboxItem
from tidings.engines.embedded.inbox import SqliteMessageStore
from tidings.services.gateway_acks import AckRecorder


# helpers -------------------------------------------------------------------------------
def direct(to: Device, client_id: str, text: str) -> dict[str, Any]:
    """A send body for ``to``'s primary device (the sender has no other devices)."""
    return {
        "id": client_id,
        "to": {"user": to.user_id},
        "ciphertexts": ciphertexts({to.user_id: [to.device_id]}, text),
    }


async def send_rest(sender: Device, body: dict[str, Any]) -> dict[str, Any]:
    async with sender.http() as http:
        r = await http.post("/v1/messages", json=body)
    assert r.status_code == 200, r.text
    reply: dict[str, Any] = r.json()
    return reply


# offline queue -------------------------------------------------------------------------
async def test_offline_backlog_arrives_in_send_order_then_queue_empty_then_live_messages(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    alice_ws = await online(alice)

    stored = await inbox_writes(gateway)
    texts = [f"offline {i}" for i in range(6)]
    server_ids = []
    for i, text in enumerate(texts):
        reply = await alice_ws.request("send", direct(bob, f"m{i}", text))
        assert reply["status"] == 200, reply
        server_ids.append(reply["body"]["server_id"])
    assert len(set(server_ids)) == len(texts)
    await until_stored(gateway, stored + len(texts))

    bob_ws = await bob.connect()
    frames = [await next_frame(bob_ws) for _ in range(len(texts) + 1)]
    assert [f["type"] for f in frames] == ["deliver"] * len(texts) + ["queue-empty"]
    backlog = [f["body"] for f in frames[:-1]]
    assert [body_text(d) for d in backlog] == texts
    assert [d["server_id"] for d in backlog] == server_ids
    assert all(d["from"] == {"user": alice.user_id, "device": 1} for d in backlog)
    for frame in frames[:-1]:
        await bob_ws.ack(frame)

    reply = await alice_ws.request("send", direct(bob, "live", "live one"))
    assert reply["status"] == 200, reply
    frame = await next_frame(bob_ws)
    assert frame["type"] == "deliver", frame
    assert body_text(frame["body"]) == "live one"
    assert frame["body"]["server_id"] == reply["body"]["server_id"]
    await bob_ws.ack(frame)
    await alice_ws.close()
    await bob_ws.close()


# redelivery and the in-flight window ---------------------------------------------------
async def test_unacked_messages_are_redelivered_with_same_server_ids_after_reconnect(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    stored = await inbox_writes(gateway)
    sent = [
        (await send_rest(alice, direct(bob, f"m{i}", f"text {i}")))["server_id"] for i in range(3)
    ]
    await until_stored(gateway, stored + 3)

    first = await bob.connect()
    got = await first.deliveries(3, ack=False)
    await first.frame("queue-empty")
    assert [d["server_id"] for d in got] == sent
    await first.close()

    second = await bob.connect()
    again = await second.deliveries(3, ack=True)
    await second.frame("queue-empty")
    assert [d["server_id"] for d in again] == sent
    assert [body_text(d) for d in again] == ["text 0", "text 1", "text 2"]
    # Acks are asynchronous: ones still unprocessed when a new connection replaces this
    # one are lost and those messages come again (at least once). Wait for them here.
    await settle(second)
    await second.close()

    # Acked now: a third connection gets nothing back.
    third = await bob.connect()
    assert (await next_frame(third))["type"] == "queue-empty"
    await third.close()


async def test_at_most_max_in_flight_deliveries_are_unacked_and_the_rest_follow_acks(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    total, window = 40, 32
    stored = await inbox_writes(gateway)
    sent = [
        (await send_rest(alice, direct(bob, f"m{i}", f"text {i}")))["server_id"]
        for i in range(total)
    ]
    await until_stored(gateway, stored + total)

    bob_ws = await bob.connect()
    first = [await bob_ws.frame("deliver") for _ in range(window)]
    await bob_ws.nothing_for("deliver", 1.5)
    assert not any(f.get("type") == "queue-empty" for f in bob_ws.backlog), bob_ws.backlog
    assert [f["body"]["server_id"] for f in first] == sent[:window]

    for frame in first:
        await bob_ws.ack(frame)
    rest = []
    for _ in range(total - window):
        frame = await next_frame(bob_ws)
        assert frame["type"] == "deliver", frame
        await bob_ws.ack(frame)
        rest.append(frame["body"]["server_id"])
    assert rest == sent[window:]
    assert (await next_frame(bob_ws))["type"] == "queue-empty"
    await bob_ws.close()


# idempotent sends ----------------------------------------------------------------------
async def test_retried_ws_send_with_same_client_id_is_accepted_once_and_delivered_once(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    alice_ws = await online(alice)
    stored = await inbox_writes(gateway)

    body = direct(bob, "retry-me", "only once")
    first = await alice_ws.request("send", body)
    second = await alice_ws.request("send", body)
    assert first["status"] == second["status"] == 200, (first, second)
    assert first["body"]["duplicate"] is False
    assert second["body"]["duplicate"] is True
    assert second["body"]["server_id"] == first["body"]["server_id"]
    assert second["body"]["timestamp"] == first["body"]["timestamp"]
    marker = await alice_ws.request("send", direct(bob, "after", "marker"))
    assert marker["status"] == 200, marker
    await until_stored(gateway, stored + 2)

    # Per-recipient order: the marker follows the message directly, with no second copy.
    bob_ws = await bob.connect()
    frames = [await next_frame(bob_ws) for _ in range(3)]
    assert [f["type"] for f in frames] == ["deliver", "deliver", "queue-empty"]
    assert [body_text(f["body"]) for f in frames[:2]] == ["only once", "marker"]
    assert frames[0]["body"]["server_id"] == first["body"]["server_id"]
    assert frames[0]["body"]["client_id"] == "retry-me"
    await alice_ws.close()
    await bob_ws.close()


async def test_a_message_id_reused_for_another_recipient_is_409_not_a_silent_duplicate(
    gateway: Gateway,
) -> None:
    alice, bob, carol = await register(gateway), await register(gateway), await register(gateway)
    await send_rest(alice, direct(bob, "m-1", "for bob"))
    async with alice.http() as http:
        r = await http.post("/v1/messages", json=direct(carol, "m-1", "for carol"))
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "id_reused"
    assert "m-1" in r.json()["error"]["message"]
    assert (await send_rest(alice, direct(carol, "m-2", "for carol")))["duplicate"] is False


async def test_retried_rest_send_with_same_client_id_is_accepted_once_and_delivered_once(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    stored = await inbox_writes(gateway)

    body = direct(bob, "rest-retry", "only once")
    first = await send_rest(alice, body)
    second = await send_rest(alice, body)
    assert first["duplicate"] is False
    assert second["duplicate"] is True
    assert second["server_id"] == first["server_id"]
    assert second["timestamp"] == first["timestamp"]
    # The same client id over the socket is the same message too.
    alice_ws = await online(alice)
    third = await alice_ws.request("send", body)
    assert third["status"] == 200, third
    assert third["body"] == {**first, "duplicate": True}
    await send_rest(alice, direct(bob, "after", "marker"))
    await until_stored(gateway, stored + 2)

    bob_ws = await bob.connect()
    frames = [await next_frame(bob_ws) for _ in range(3)]
    assert [f["type"] for f in frames] == ["deliver", "deliver", "queue-empty"]
    assert [body_text(f["body"]) for f in frames[:2]] == ["only once", "marker"]
    assert frames[0]["body"]["server_id"] == first["server_id"]
    await alice_ws.close()
    await bob_ws.close()


# prekeys -------------------------------------------------------------------------------
async def test_one_time_prekeys_are_never_handed_out_twice_under_concurrent_fetches(
    gateway: Gateway,
) -> None:
    bob = await register(gateway)
    await bob.publish_keys(one_time=20)
    fetchers = [await register(gateway) for _ in range(3)]
    clients = [f.http() for f in fetchers]
    try:
        responses = await asyncio.gather(
            *(clients[i % len(clients)].get(f"/v1/keys/{bob.user_id}") for i in range(30))
        )
    finally:
        for client in clients:
            await client.aclose()

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    devices = [r.json()["devices"] for r in responses]
    assert all(len(ds) == 1 and ds[0]["device_id"] == 1 for ds in devices)
    claimed = [ds[0]["one_time_prekey"] for ds in devices]
    key_ids = [k["key_id"] for k in claimed if k is not None]
    assert len(key_ids) == 20
    assert sorted(key_ids) == list(range(1, 21))  # all distinct, every one handed out
    assert len({k["public_key"] for k in claimed if k is not None}) == 20
    fallbacks = [ds[0] for ds in devices if ds[0]["one_time_prekey"] is None]
    assert len(fallbacks) == 10
    assert all(d["signed_prekey"]["key_id"] == 1 for d in fallbacks)

    async with bob.http() as http:
        r = await http.get("/v1/keys/count")
    assert r.status_code == 200, r.text
    assert r.json() == {"count": 0}


# sockets -------------------------------------------------------------------------------
async def test_connecting_the_same_device_twice_closes_the_older_socket_with_4001(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    old = await online(bob)
    new = await online(bob)

    await asyncio.wait_for(old.ws.wait_closed(), timeout=5.0)
    assert old.ws.close_code == wsproto.CLOSE_CONNECTED_ELSEWHERE == 4001
    assert old.ws.close_reason == "connected elsewhere"

    # The new socket is the live one.
    reply = await send_rest(alice, direct(bob, "m1", "to the new socket"))
    (delivery,) = await new.deliveries(1)
    assert body_text(delivery) == "to the new socket"
    assert delivery["server_id"] == reply["server_id"]
    await new.close()


# typing --------------------------------------------------------------------------------
async def add_contact(owner: Device, contact: Device) -> None:
    async with owner.http() as http:
        r = await http.put("/v1/contacts", json={"user_ids": [contact.user_id]})
    assert r.status_code == 200, r.text


async def test_typing_reaches_online_recipient_as_event_and_is_never_stored(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    await add_contact(bob, alice)  # typing goes only to users who know the typist
    alice_ws = await online(alice)
    bob_ws = await online(bob)

    reply = await alice_ws.request("typing", {"to": {"user": bob.user_id}, "state": "started"})
    assert reply["status"] == 200, reply
    event = await bob_ws.frame("typing")
    assert "id" not in event  # an event, not a delivery awaiting an ack
    assert event["body"]["typing"] == "started"
    assert event["body"]["type"] == "typing"
    assert event["body"]["from"] == {"user": alice.user_id, "device": 1}
    assert not any(f.get("type") == "deliver" for f in bob_ws.backlog)

    # Carol's primary is offline; her linked laptop is online. Copies are notified in
    # device order, so once the laptop sees the event the primary's copy is gone by.
    carol = await register(gateway)
    await add_contact(carol, alice)
    laptop = await carol.link()
    laptop_ws = await online(laptop)
    reply = await alice_ws.request("typing", {"to": {"user": carol.user_id}, "state": "started"})
    assert reply["status"] == 200, reply
    event = await laptop_ws.frame("typing")
    assert event["body"]["from"] == {"user": alice.user_id, "device": 1}

    carol_ws = await carol.connect()
    assert (await next_frame(carol_ws))["type"] == "queue-empty"
    await carol_ws.nothing_for("typing", 1.0)
    assert carol_ws.backlog == []
    # Nor does bob get anything stored from the typing signal on reconnect.
    await bob_ws.close()
    bob_again = await bob.connect()
    assert (await next_frame(bob_again))["type"] == "queue-empty"
    for sock in (alice_ws, laptop_ws, carol_ws, bob_again):
        await sock.close()


# pipelined sends -------------------------------------------------------------------------
async def _metric(gateway: Gateway, name: str) -> float:
    async with gateway.ops_http() as http:
        r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    for line in r.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_pipelined_sends_are_answered_in_order_each_on_its_own_and_kept_in_order(
    gateway: Gateway,
) -> None:
    """A client may send without waiting for answers: the gateway takes what has queued
    as one batch, yet answers every send in request order, refuses only the bad ones,
    and delivers in send order."""
    alice, bob, carol = await register(gateway), await register(gateway), await register(gateway)
    alice_ws = await online(alice)
    stored = await inbox_writes(gateway)
    frames: list[dict[str, Any]] = [
        {"id": f"p{i}", "type": "send", "body": direct(bob, f"m{i}", f"text {i}")}
        for i in range(40)
    ]
    frames.insert(10, {"id": "again", "type": "send", "body": direct(bob, "m3", "text 3")})
    frames.insert(20, {"id": "reused", "type": "send", "body": direct(carol, "m5", "other")})
    frames.insert(30, {"id": "stale", "type": "send", "body": direct(bob, "m-x", "x")})
    frames[30]["body"]["ciphertexts"][bob.user_id][0]["device"] = 7  # no such device
    await asyncio.gather(*(alice_ws.send_text(json.dumps(f)) for f in frames))

    answers: list[dict[str, Any]] = []
    while len(answers) < len(frames):
        frame = await next_frame(alice_ws)
        if frame.get("type") == "response":
            answers.append(frame)
    assert [a["id"] for a in answers] == [f["id"] for f in frames]  # request order
    by_id = {a["id"]: a for a in answers}
    assert all(by_id[f"p{i}"]["status"] == 200 for i in range(40)), answers
    assert not any(by_id[f"p{i}"]["body"]["duplicate"] for i in range(40))
    assert by_id["again"]["status"] == 200
    assert by_id["again"]["body"]["duplicate"] is True
    assert by_id["again"]["body"]["server_id"] == by_id["p3"]["body"]["server_id"]
    assert by_id["reused"]["status"] == 409
    assert by_id["reused"]["body"]["error"]["code"] == "id_reused"
    assert by_id["stale"]["status"] == 409
    assert by_id["stale"]["body"]["error"]["code"] == "mismatched_devices"
    # At least one batch held several sends (the point of pipelining).
    batches = await _metric(gateway, "tidings_send_batch_size_count")
    assert 0 < batches < len(frames), batches

    await until_stored(gateway, stored + 40)
    bob_ws = await bob.connect()
    got = await bob_ws.deliveries(40)
    assert [body_text(d) for d in got] == [f"text {i}" for i in range(40)]
    await bob_ws.nothing_for("deliver", 0.5)
    await alice_ws.close()
    await bob_ws.close()


async def test_a_slow_ack_write_holds_up_a_ping_but_not_the_sends_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acks are recorded beside the socket's sends: while Bob's ack write is held, his
    own send is still answered (and delivered); his ping, which promises that the acks
    read before it are recorded, is answered only once the write went through, and
    the acked message is not delivered again."""
    real_ack = SqliteMessageStore.ack
    real_wait = AckRecorder.recorded_so_far
    held, release, recorded, ping_waits = (asyncio.Event() for _ in range(4))

    async def held_ack(self: SqliteMessageStore, *args: Any, **kwargs: Any) -> list[InboxItem]:
        held.set()
        await release.wait()
        acked = await real_ack(self, *args, **kwargs)
        recorded.set()
        return acked

    async def noted_wait(self: AckRecorder) -> None:
        ping_waits.set()
        await real_wait(self)

    monkeypatch.setattr(SqliteMessageStore, "ack", held_ack)
    monkeypatch.setattr(AckRecorder, "recorded_so_far", noted_wait)
    async with run_gateway(tmp_path / "data") as gateway:
        alice, bob = await register(gateway), await register(gateway)
        alice_ws, bob_ws = await online(alice), await online(bob)
        assert (await alice_ws.request("send", direct(bob, "a1", "to bob")))["status"] == 200
        (first,) = await bob_ws.deliveries(1)  # and acked: the write is now held
        await asyncio.wait_for(held.wait(), 10.0)

        reply = await bob_ws.request("send", direct(alice, "b1", "to alice"))
        assert reply["status"] == 200, reply
        (back,) = await alice_ws.deliveries(1)
        assert body_text(back) == "to alice"
        assert not recorded.is_set()  # all that happened while the ack write was held

        ping = asyncio.create_task(bob_ws.request("ping"))
        await asyncio.wait_for(ping_waits.wait(), 10.0)  # the gateway holds the ping
        release.set()
        assert (await ping)["status"] == 200
        assert recorded.is_set()
        assert first["server_id"] not in await gateway_pending(gateway, bob)
        await alice_ws.close()
        await bob_ws.close()


async def gateway_pending(gateway: Gateway, device: Device) -> list[str]:
    """Server ids still pending in ``device``'s inbox, read from the server's own store."""
    assert gateway.running is not None
    ctx = gateway.running.server.config.app.state.platform.services.ctx
    items = await ctx.messages.fetch(device.user_id, device.device_id, None, 100)
    return [item.server_id for item in items]


async def test_live_messages_arrive_without_waiting_for_the_idle_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wake-ups alone carry a live conversation: with the safety-net poll far away, a
    wake-up that lands while the socket is reading its inbox must send it round again.
    Each inbox read here answers what it found 50 ms earlier, and a message arrives
    meanwhile (a wake-up cleared after the read left it for the poll)."""
    real_fetch = SqliteMessageStore.fetch

    async def slow_fetch(self: SqliteMessageStore, *args: Any) -> list[InboxItem]:
        found = await real_fetch(self, *args)
        await asyncio.sleep(0.05)
        return found

    monkeypatch.setattr(SqliteMessageStore, "fetch", slow_fetch)
    async with run_gateway(tmp_path / "data", inbox_poll_interval=300.0) as gateway:
        alice, bob = await register(gateway), await register(gateway)
        alice_ws, bob_ws = await online(alice), await online(bob)
        for i in range(20):
            # The first message's wake-up sends Bob's socket to read its inbox (slowly):
            # the second lands during that read, which does not see it.
            for part in ("a", "b"):
                reply = await alice_ws.request("send", direct(bob, f"{part}{i}", f"{part} {i}"))
                assert reply["status"] == 200, reply
            got = await bob_ws.deliveries(2, timeout=10.0)
            assert [body_text(g) for g in got] == [f"a {i}", f"b {i}"]
        await alice_ws.close()
        await bob_ws.close()


async def test_an_ack_sends_a_socket_to_read_its_inbox_only_when_it_may_find_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket whose last read from the inbox's start found everything reads again on a
    wake-up, not after each ack too: one read per message in a live conversation (there
    were two, the second finding nothing). With the window full, acks still send it on."""
    reads: dict[str, int] = {}
    real_fetch = SqliteMessageStore.fetch

    async def counted_fetch(self: SqliteMessageStore, user_id: str, *args: Any) -> Any:
        reads[user_id] = reads.get(user_id, 0) + 1
        return await real_fetch(self, user_id, *args)

    monkeypatch.setattr(SqliteMessageStore, "fetch", counted_fetch)
    async with run_gateway(tmp_path / "data", inbox_poll_interval=300.0) as gateway:
        alice, bob = await register(gateway), await register(gateway)
        alice_ws, bob_ws = await online(alice), await online(bob)
        at_connect = reads[bob.user_id]
        for i in range(10):
            reply = await alice_ws.request("send", direct(bob, f"m{i}", f"text {i}"))
            assert reply["status"] == 200, reply
            (got,) = await bob_ws.deliveries(1)
            assert body_text(got) == f"text {i}"
            await settle(bob_ws)  # the ack is recorded
        assert reads[bob.user_id] - at_connect <= 10

        # A full window: the socket stops reading until acks make room.
        window = 32  # Limits.max_in_flight
        for i in range(window + 8):
            reply = await alice_ws.request("send", direct(bob, f"w{i}", f"burst {i}"))
            assert reply["status"] == 200, reply
        burst = await bob_ws.deliveries(window + 8)
        assert [body_text(b) for b in burst] == [f"burst {i}" for i in range(window + 8)]
        await alice_ws.close()
        await bob_ws.close()


async def test_deliveries_to_a_connected_device_observe_their_accept_to_deliver_latency(
    gateway: Gateway,
) -> None:
    """The latency SLO's histogram: one observation per delivery of a send accepted while
    the recipient device was connected; a backlog that waited offline is not counted (its
    wait is the device's, not the platform's)."""
    alice, bob = await register(gateway), await register(gateway)
    count = "tidings_delivery_latency_seconds_count"
    before = await _metric(gateway, count)
    stored = await inbox_writes(gateway)
    await send_rest(alice, direct(bob, "offline-1", "waited offline"))
    await until_stored(gateway, stored + 1)
    bob_ws = await bob.connect()
    [got] = await bob_ws.deliveries(1)
    assert body_text(got) == "waited offline"
    assert await _metric(gateway, count) == before
    await send_rest(alice, direct(bob, "live-1", "live"))
    [got] = await bob_ws.deliveries(1)
    assert body_text(got) == "live"
    await bob_ws.close()
    assert await _metric(gateway, count) == before + 1
    assert await _metric(gateway, "tidings_delivery_latency_seconds_sum") < 60
