"""What a stranger cannot do, over real sockets on each engine set: put receipts in the
queue of someone who never wrote to them, send typing signals to users they never talked
with or to groups they are not in, or flood a socket with either past its budget.

The budget tests run the gateway on a clock the test moves (``limits_support``)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from harness import (
    Device,
    Gateway,
    Socket,
    ciphertexts,
    inbox_writes,
    online,
    register,
    until_stored,
)
from limits_support import clocked


async def pipelined(sock: Socket, kind: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send every request before reading any answer (a flood); the answers in order."""
    ids = [f"f{uuid.uuid4().hex[:12]}" for _ in bodies]
    for rid, body in zip(ids, bodies, strict=True):
        await sock.send_text(json.dumps({"id": rid, "type": kind, "body": body}))
    return [await sock.response_to(rid) for rid in ids]


def made_up_ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def error_of(reply: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = reply["body"]["error"]
    return error


async def send_to(sock: Socket, sender: Device, to: Device, client_id: str) -> str:
    reply = await sock.request(
        "send",
        {
            "id": client_id,
            "to": {"user": to.user_id},
            "ciphertexts": ciphertexts({to.user_id: [1]}, "hi"),
        },
    )
    assert reply["status"] == 200, reply
    server_id: str = reply["body"]["server_id"]
    return server_id


async def add_contact(owner: Device, contact: Device) -> None:
    async with owner.http() as http:
        r = await http.put("/v1/contacts", json={"user_ids": [contact.user_id]})
    assert r.status_code == 200, r.text


# receipts ------------------------------------------------------------------------------
async def test_read_receipts_name_only_messages_their_addressee_sent_the_reader(
    gateway: Gateway,
) -> None:
    alice, bob, mallory = [await register(gateway) for _ in range(3)]
    alice_ws, bob_ws, mallory_ws = await online(alice), await online(bob), await online(mallory)
    server_id = await send_to(alice_ws, alice, bob, "m1")
    (delivery,) = await bob_ws.deliveries(1)  # acked: bob may now receipt it to alice
    assert delivery["server_id"] == server_id
    await until_stored(gateway, 2)  # the message, and alice's delivered receipt
    await alice_ws.close()  # what reaches alice from now on waits in her inbox

    for reader, to, ids in [
        (mallory_ws, alice, made_up_ids(100)),  # ids that never existed
        (mallory_ws, alice, [server_id]),  # alice's real message, but sent to bob
        (bob_ws, mallory, [server_id]),  # bob got it, but not from mallory
        (bob_ws, bob, [server_id]),  # nor from himself
    ]:
        reply = await reader.request(
            "receipt", {"to": to.user_id, "kind": "read", "message_ids": ids}
        )
        assert reply["status"] == 404, reply
        assert error_of(reply)["code"] == "not_found"
        assert error_of(reply)["details"] == {"dropped": ids}

    unknown = made_up_ids(2)
    reply = await bob_ws.request(
        "receipt",
        {"to": alice.user_id, "kind": "read", "message_ids": [unknown[0], server_id, unknown[1]]},
    )
    assert reply["status"] == 200, reply
    assert reply["body"]["dropped"] == unknown
    await until_stored(gateway, 3)

    # Alice's queue holds bob's two receipts, each naming her message only; nothing
    # from mallory, who would have been queued before bob's read receipt.
    alice_ws = await alice.connect()
    receipts = await alice_ws.deliveries(2)
    await alice_ws.frame("queue-empty")
    assert [(r["from"]["user"], r["receipt"]) for r in receipts] == [
        (bob.user_id, {"kind": "delivered", "message_ids": [server_id]}),
        (bob.user_id, {"kind": "read", "message_ids": [server_id]}),
    ]
    assert receipts[1]["server_id"] == reply["body"]["server_id"]
    assert await inbox_writes(gateway) == 3
    async with gateway.ops_http() as http:
        metrics = (await http.get("/metrics")).text
    assert "tidings_receipt_ids_dropped_total 105.0" in metrics
    for sock in (alice_ws, bob_ws, mallory_ws):
        await sock.close()


# typing --------------------------------------------------------------------------------
async def test_typing_goes_only_to_users_one_talks_with_or_is_a_contact_of(
    gateway: Gateway,
) -> None:
    alice, bob, carol, mallory = [await register(gateway) for _ in range(4)]
    sockets = [await online(d) for d in (alice, bob, carol, mallory)]
    alice_ws, bob_ws, carol_ws, mallory_ws = sockets

    def typing(to: str) -> dict[str, Any]:
        return {"to": {"user": to}, "state": "started"}

    for target in (alice.user_id, mallory.user_id, str(uuid.uuid4())):  # stranger, self, nobody
        reply = await mallory_ws.request("typing", typing(target))
        assert reply["status"] == 403, reply
        assert error_of(reply)["code"] == "forbidden"

    # A direct message opens the conversation both ways.
    await send_to(alice_ws, alice, bob, "m1")
    await bob_ws.deliveries(1)
    for sock, to, receiver in [(bob_ws, alice, alice_ws), (alice_ws, bob, bob_ws)]:
        reply = await sock.request("typing", typing(to.user_id))
        assert reply["status"] == 200, reply
        assert (await receiver.frame("typing"))["body"]["typing"] == "started"

    # Carol has mallory in her contacts: mallory may type to her, not the other way.
    await add_contact(carol, mallory)
    reply = await mallory_ws.request("typing", typing(carol.user_id))
    assert reply["status"] == 200, reply
    assert (await carol_ws.frame("typing"))["body"]["from"]["user"] == mallory.user_id
    reply = await carol_ws.request("typing", typing(mallory.user_id))
    assert reply["status"] == 403, reply

    async with alice.http() as http:
        r = await http.post("/v1/groups", json={"name": "two", "members": [bob.user_id]})
        assert r.status_code == 201, r.text
        group = r.json()["group_id"]
    reply = await mallory_ws.request("typing", {"to": {"group": group}, "state": "started"})
    assert reply["status"] == 404, reply  # not a member (the group's existence not told)
    reply = await bob_ws.request("typing", {"to": {"group": group}, "state": "started"})
    assert reply["status"] == 200, reply
    assert (await alice_ws.frame("typing"))["body"]["group"] == group

    async with gateway.ops_http() as http:
        metrics = (await http.get("/metrics")).text
    assert "tidings_typing_refused_total 4.0" in metrics
    # The message and its delivered receipt; the typing signals, all seen, were not stored.
    await until_stored(gateway, 2)
    assert await inbox_writes(gateway) == 2
    for sock in sockets:
        await sock.close()


# budgets per socket ------------------------------------------------------------------
async def test_a_receipt_flood_is_refused_past_the_sockets_budget_and_queues_nothing(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    async with clocked(tmp_path, engine_settings) as (gw, clock):
        alice, mallory = await register(gw), await register(gw)
        mallory_ws = await online(mallory)
        flood = [
            {"to": alice.user_id, "kind": "read", "message_ids": made_up_ids(100)}
            for _ in range(110)
        ]
        answers = await pipelined(mallory_ws, "receipt", flood)
        assert [a["status"] for a in answers] == [404] * 100 + [429] * 10
        error = error_of(answers[-1])
        assert error["code"] == "rate_limited"
        retry_after = float(error["details"]["retry_after"])
        assert 0 < retry_after <= 2.2  # ten over a budget refilled at 5 a second

        clock.advance(retry_after)
        (answer,) = await pipelined(mallory_ws, "receipt", flood[:1])
        assert answer["status"] == 404, answer
        (answer,) = await pipelined(mallory_ws, "receipt", flood[:1])
        assert answer["status"] == 429, answer

        # A new socket of the same device starts with the same (empty) bucket.
        await mallory_ws.close()
        mallory_ws = await online(mallory)
        (answer,) = await pipelined(mallory_ws, "receipt", flood[:1])
        assert answer["status"] == 429, answer
        assert await inbox_writes(gw) == 0
        async with gw.ops_http() as http:
            metrics = (await http.get("/metrics")).text
        assert 'tidings_rate_limited_total{limit="receipt"} 12.0' in metrics
        await mallory_ws.close()


async def test_a_socket_flooding_past_its_budget_is_read_slower_and_loses_nothing(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    """A flood of refused frames pauses its socket's reading (the time is counted);
    every frame is still answered, in order, and another socket is served meanwhile."""
    async with clocked(tmp_path, engine_settings) as (gw, _):
        alice, mallory = await register(gw), await register(gw)
        alice_ws, mallory_ws = await online(alice), await online(mallory)
        receipt = {"to": alice.user_id, "kind": "read", "message_ids": made_up_ids(1)}
        # More than a socket queues (256): it reads again after refusals, paused.
        answers = await pipelined(mallory_ws, "receipt", [receipt] * 400)
        assert [a["status"] for a in answers] == [404] * 100 + [429] * 300
        reply = await alice_ws.request("ping")
        assert reply["status"] == 200, reply
        async with gw.ops_http() as http:
            metrics = (await http.get("/metrics")).text
        (paused,) = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("tidings_ws_read_paused_seconds_total ")
        ]
        assert paused > 0
        await alice_ws.close()
        await mallory_ws.close()


async def test_typing_is_limited_per_socket_and_refills_with_time(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    async with clocked(tmp_path, engine_settings) as (gw, clock):
        alice, bob = await register(gw), await register(gw)
        await add_contact(bob, alice)
        alice_ws, bob_ws = await online(alice), await online(bob)
        typing = {"to": {"user": bob.user_id}, "state": "started"}
        answers = await pipelined(alice_ws, "typing", [typing] * 25)
        assert [a["status"] for a in answers] == [200] * 20 + [429] * 5
        retry_after = float(error_of(answers[-1])["details"]["retry_after"])
        assert 0 < retry_after <= 2.5  # five over a budget refilled at 2 a second
        for _ in range(20):
            await bob_ws.frame("typing")

        # Other kinds of frames have budgets of their own.
        reply = await alice_ws.request("ping")
        assert reply["status"] == 200, reply
        clock.advance(1.0)  # two signals' worth
        answers = await pipelined(alice_ws, "typing", [typing] * 3)
        assert [a["status"] for a in answers] == [200, 200, 429]
        await alice_ws.close()
        await bob_ws.close()
