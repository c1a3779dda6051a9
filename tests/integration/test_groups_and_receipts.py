"""Device lists, groups and receipts over real sockets: multi-device fan-out, the
mismatched/stale device errors, group membership changes, sender-key group bodies and
delivered/read receipts."""

from __future__ import annotations

import base64
from typing import Any

from harness import (
    Device,
    Gateway,
    Socket,
    b64,
    body_text,
    ciphertexts,
    inbox_writes,
    next_frame,
    online,
    register,
    until_stored,
)

# helpers -------------------------------------------------------------------------------


def recipient_of(delivery: dict[str, Any]) -> tuple[str, int]:
    """The (user, device) a test ciphertext was made for (see ``harness.ciphertexts``)."""
    _, user, device = base64.b64decode(delivery["body"]).decode().split("|")
    return user, int(device)


async def message(sock: Socket, ack: bool = True) -> dict[str, Any]:
    """The next ``deliver`` frame of type message (receipts on the way are acked)."""
    while True:
        frame = await sock.frame("deliver")
        if frame["body"]["type"] == "message":
            if ack:
                await sock.ack(frame)
            body: dict[str, Any] = frame["body"]
            return body
        await sock.ack(frame)


async def receipt(sock: Socket, kind: str) -> dict[str, Any]:
    """The next receipt delivery of ``kind`` (acked)."""
    while True:
        frame = await sock.frame("deliver")
        await sock.ack(frame)
        body: dict[str, Any] = frame["body"]
        if body["type"] == "receipt" and body["receipt"]["kind"] == kind:
            return body


def error_of(reply: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = reply["body"]["error"]
    return error


async def create_group(admin: Device, members: list[Device]) -> str:
    async with admin.http() as http:
        r = await http.post(
            "/v1/groups", json={"name": "five", "members": [m.user_id for m in members]}
        )
    assert r.status_code == 201, r.text
    group = r.json()
    assert group["members"] == {admin.user_id: "admin"} | {m.user_id: "member" for m in members}
    group_id: str = group["group_id"]
    return group_id


# multi-device fan-out ------------------------------------------------------------------
async def test_each_recipient_device_and_senders_other_device_get_their_own_ciphertext(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    alice_laptop = await alice.link("alice laptop")
    bob = await register(gateway)
    bob_laptop = await bob.link("bob laptop")
    assert (alice_laptop.device_id, bob_laptop.device_id) == (2, 2)
    sockets = {
        name: await online(d)
        for name, d in {
            "alice": alice,
            "alice_laptop": alice_laptop,
            "bob": bob,
            "bob_laptop": bob_laptop,
        }.items()
    }
    alice_ws = sockets["alice"]

    # Only bob's devices: the sender's own laptop is missing.
    reply = await alice_ws.request(
        "send",
        {
            "id": "m1",
            "to": {"user": bob.user_id},
            "ciphertexts": ciphertexts({bob.user_id: [1, 2]}, "hello"),
        },
    )
    assert reply["status"] == 409, reply
    error = error_of(reply)
    assert error["code"] == "mismatched_devices"
    assert error["details"]["missing"] == {alice.user_id: [2]}
    assert error["details"]["extra"] == {}

    # Bob's laptop missing, and a device bob does not have.
    reply = await alice_ws.request(
        "send",
        {
            "id": "m1",
            "to": {"user": bob.user_id},
            "ciphertexts": ciphertexts({bob.user_id: [1, 3], alice.user_id: [2]}, "hello"),
        },
    )
    assert reply["status"] == 409, reply
    error = error_of(reply)
    assert error["code"] == "mismatched_devices"
    assert error["details"]["missing"] == {bob.user_id: [2]}
    assert error["details"]["extra"] == {bob.user_id: [3]}

    # The same over REST.
    async with alice.http() as http:
        r = await http.post(
            "/v1/messages",
            json={
                "id": "m1",
                "to": {"user": bob.user_id},
                "ciphertexts": ciphertexts({bob.user_id: [1]}, "hello"),
            },
        )
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "mismatched_devices"
    assert r.json()["error"]["details"]["missing"] == {alice.user_id: [2], bob.user_id: [2]}

    # Retried with every device: accepted (the refusals left no trace of the client id).
    stored = await inbox_writes(gateway)
    reply = await alice_ws.request(
        "send",
        {
            "id": "m1",
            "to": {"user": bob.user_id},
            "ciphertexts": ciphertexts({bob.user_id: [1, 2], alice.user_id: [2]}, "hello"),
        },
    )
    assert reply["status"] == 200, reply
    assert reply["body"]["duplicate"] is False
    server_id = reply["body"]["server_id"]

    for name, owner in [("bob", bob), ("bob_laptop", bob_laptop), ("alice_laptop", alice_laptop)]:
        got = await message(sockets[name], ack=False)
        assert body_text(got) == "hello"
        assert recipient_of(got) == (owner.user_id, owner.device_id)
        assert got["server_id"] == server_id
        assert got["from"] == {"user": alice.user_id, "device": 1}
    await until_stored(gateway, stored + 3)
    # The sending device gets no copy of its own message (nothing was acked yet, so no
    # receipts either).
    await alice_ws.nothing_for("deliver", 1.0)
    for sock in sockets.values():
        await sock.close()


async def test_stale_registration_id_is_refused_with_410_naming_the_stale_devices(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    bob = await register(gateway, registration_id=101)
    bob_laptop = await bob.link()
    alice_ws = await online(alice)

    def body(client_id: str, primary_reg: int, laptop_reg: int) -> dict[str, Any]:
        return {
            "id": client_id,
            "to": {"user": bob.user_id},
            "ciphertexts": {
                bob.user_id: [
                    {"device": 1, "registration_id": primary_reg, "body": b64(b"x|bob|1")},
                    {"device": 2, "registration_id": laptop_reg, "body": b64(b"x|bob|2")},
                ]
            },
        }

    reply = await alice_ws.request("send", body("m1", 999, bob_laptop.registration_id))
    assert reply["status"] == 410, reply
    error = error_of(reply)
    assert error["code"] == "stale_devices"
    assert error["details"]["stale"] == {bob.user_id: [1]}

    reply = await alice_ws.request("send", body("m1", 101, bob_laptop.registration_id))
    assert reply["status"] == 200, reply

    # Bob reinstalls (registers again with a new registration id): the old id is stale.
    async with gateway.http() as http:
        r = await http.post("/v1/auth/code", json={"phone": bob.phone})
        assert r.status_code == 202, r.text
        r = await http.post(
            "/v1/auth/register",
            json={"phone": bob.phone, "code": gateway.code_for(bob.phone), "registration_id": 202},
        )
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == bob.user_id
    async with alice.http() as http:
        r = await http.post("/v1/messages", json=body("m2", 101, 1234))
    assert r.status_code == 410, r.text
    assert r.json()["error"]["code"] == "stale_devices"
    assert r.json()["error"]["details"]["stale"] == {bob.user_id: [1, 2]}

    reply = await alice_ws.request("send", body("m2", 202, bob_laptop.registration_id))
    assert reply["status"] == 200, reply
    await alice_ws.close()


# groups --------------------------------------------------------------------------------
async def test_group_of_five_fans_out_and_a_removed_member_receives_nothing_more(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    others = [await register(gateway) for _ in range(4)]
    group_id = await create_group(alice, others)
    alice_ws = await online(alice)
    sockets = [await online(d) for d in others]

    everyone = {d.user_id: [1] for d in others}
    reply = await alice_ws.request(
        "send",
        {"id": "g1", "to": {"group": group_id}, "ciphertexts": ciphertexts(everyone, "first")},
    )
    assert reply["status"] == 200, reply
    for device, sock in zip(others, sockets, strict=True):
        got = await message(sock)
        assert body_text(got) == "first"
        assert got["group"] == group_id
        assert recipient_of(got) == (device.user_id, 1)
        assert got["server_id"] == reply["body"]["server_id"]

    # A member answers the whole group (including the admin).
    bob, carol, dave, erin = others
    reply = await sockets[0].request(
        "send",
        {
            "id": "g2",
            "to": {"group": group_id},
            "ciphertexts": ciphertexts(
                {u: [1] for u in (alice.user_id, carol.user_id, dave.user_id, erin.user_id)},
                "reply",
            ),
        },
    )
    assert reply["status"] == 200, reply
    for sock in [alice_ws, *sockets[1:]]:
        got = await message(sock)
        assert body_text(got) == "reply"
        assert got["from"] == {"user": bob.user_id, "device": 1}

    async with alice.http() as http:
        r = await http.delete(f"/v1/groups/{group_id}/members/{erin.user_id}")
    assert r.status_code == 200, r.text
    assert erin.user_id not in r.json()["members"]

    reply = await alice_ws.request(
        "send",
        {"id": "g3", "to": {"group": group_id}, "ciphertexts": ciphertexts(everyone, "second")},
    )
    assert reply["status"] == 409, reply
    error = error_of(reply)
    assert error["code"] == "mismatched_devices"
    assert error["details"]["extra"] == {erin.user_id: [1]}
    assert error["details"]["missing"] == {}

    remaining = {d.user_id: [1] for d in (bob, carol, dave)}
    reply = await alice_ws.request(
        "send",
        {"id": "g3", "to": {"group": group_id}, "ciphertexts": ciphertexts(remaining, "second")},
    )
    assert reply["status"] == 200, reply
    for sock in sockets[:3]:
        got = await message(sock)
        assert body_text(got) == "second"
        assert got["server_id"] == reply["body"]["server_id"]
    await sockets[3].nothing_for("deliver", 1.5)

    # Erin can no longer send to the group either.
    reply = await sockets[3].request(
        "send",
        {"id": "e1", "to": {"group": group_id}, "ciphertexts": ciphertexts(remaining, "x")},
    )
    assert reply["status"] == 404, reply
    for sock in [alice_ws, *sockets]:
        await sock.close()


async def test_group_body_reaches_every_member_device_except_the_sending_one(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    alice_laptop = await alice.link()
    others = [await register(gateway) for _ in range(4)]
    bob_laptop = await others[0].link()
    group_id = await create_group(alice, others)
    receivers = [alice_laptop, *others, bob_laptop]
    sockets = [await online(d) for d in receivers]

    stored = await inbox_writes(gateway)
    sender_key_body = b64(b"one sender-key ciphertext for all")
    async with alice.http() as http:
        r = await http.post(
            "/v1/messages",
            json={"id": "sk1", "to": {"group": group_id}, "group_body": sender_key_body},
        )
    assert r.status_code == 200, r.text
    server_id = r.json()["server_id"]

    for device, sock in zip(receivers, sockets, strict=True):
        got = await message(sock, ack=False)
        assert got["body"] == sender_key_body, device
        assert got["group"] == group_id
        assert got["server_id"] == server_id
        assert got["from"] == {"user": alice.user_id, "device": 1}
    await until_stored(gateway, stored + len(receivers))

    # Every copy is stored by now; the sending device has none waiting.
    alice_ws = await alice.connect()
    assert (await next_frame(alice_ws))["type"] == "queue-empty"
    await alice_ws.nothing_for("deliver", 0.5)

    # A group body is refused for a direct send.
    async with alice.http() as http:
        r = await http.post(
            "/v1/messages",
            json={"id": "sk2", "to": {"user": others[0].user_id}, "group_body": sender_key_body},
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_input"
    for sock in [alice_ws, *sockets]:
        await sock.close()


# receipts ------------------------------------------------------------------------------
async def test_ack_sends_delivered_receipt_and_read_receipt_reaches_every_sender_device(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    alice_laptop = await alice.link()
    bob = await register(gateway)
    alice_ws = await online(alice)
    laptop_ws = await online(alice_laptop)
    bob_ws = await online(bob)

    reply = await alice_ws.request(
        "send",
        {
            "id": "m1",
            "to": {"user": bob.user_id},
            "ciphertexts": ciphertexts({bob.user_id: [1], alice.user_id: [2]}, "read me"),
        },
    )
    assert reply["status"] == 200, reply
    server_id = reply["body"]["server_id"]
    assert (await message(laptop_ws))["server_id"] == server_id
    frame = await bob_ws.frame("deliver")
    assert frame["body"]["type"] == "message"
    assert frame["body"]["server_id"] == server_id
    # Nothing acked yet: no delivered receipt.
    await alice_ws.nothing_for("deliver", 0.5)
    await bob_ws.ack(frame)

    for sock in (alice_ws, laptop_ws):
        delivered = await receipt(sock, "delivered")
        assert server_id in delivered["receipt"]["message_ids"]
        assert delivered["from"] == {"user": bob.user_id, "device": 1}

    reply = await bob_ws.request(
        "receipt", {"to": alice.user_id, "kind": "read", "message_ids": [server_id]}
    )
    assert reply["status"] == 200, reply
    for sock in (alice_ws, laptop_ws):
        read = await receipt(sock, "read")
        assert read["receipt"]["message_ids"] == [server_id]
        assert read["from"] == {"user": bob.user_id, "device": 1}
        assert read["server_id"] == reply["body"]["server_id"]
    for sock in (alice_ws, laptop_ws, bob_ws):
        await sock.close()
