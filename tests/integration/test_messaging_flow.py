"""Two people register, publish keys, and exchange messages over real sockets."""

from __future__ import annotations

from harness import Gateway, body_text, ciphertexts, online, register


async def test_two_users_register_exchange_keys_and_messages(gateway: Gateway) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    await alice.publish_keys()
    await bob.publish_keys()

    async with alice.http() as http:
        r = await http.get(f"/v1/keys/{bob.user_id}")
    assert r.status_code == 200
    bundle = r.json()
    assert [d["device_id"] for d in bundle["devices"]] == [1]
    assert bundle["devices"][0]["one_time_prekey"] is not None

    bob_ws = await online(bob)
    alice_ws = await alice.connect()
    reply = await alice_ws.request(
        "send",
        {
            "id": "m1",
            "to": {"user": bob.user_id},
            "ciphertexts": ciphertexts({bob.user_id: [1]}, "hi bob"),
        },
    )
    assert reply["status"] == 200, reply
    (delivery,) = await bob_ws.deliveries(1)
    assert body_text(delivery) == "hi bob"
    assert delivery["from"] == {"user": alice.user_id, "device": 1}
    assert delivery["server_id"] == reply["body"]["server_id"]

    reply = await bob_ws.request(
        "send",
        {
            "id": "m2",
            "to": {"user": alice.user_id},
            "ciphertexts": ciphertexts({alice.user_id: [1]}, "hi alice"),
        },
    )
    assert reply["status"] == 200, reply
    # Alice first sees the delivered receipt for m1 or bob's reply; take the message.
    (delivery,) = await alice_ws.deliveries(1)
    while delivery["type"] != "message":
        (delivery,) = await alice_ws.deliveries(1)
    assert body_text(delivery) == "hi alice"
    await alice_ws.close()
    await bob_ws.close()


async def test_lone_surrogate_in_a_client_id_is_refused_with_a_4xx_not_a_crash(
    gateway: Gateway,
) -> None:
    alice, bob = await register(gateway), await register(gateway)
    sock = await alice.connect()
    target = bob.user_id
    frame = (
        '{"id":"r1","type":"send","body":{"id":"\\ud800","to":{"user":"' + target + '"},'
        '"ciphertexts":{"' + target + '":[{"device":1,"body":"aGk="}]}}}'
    )
    await sock.send_text(frame)
    reply = await sock.response_to("r1")
    assert reply["status"] == 422, reply
    assert "unicode" in reply["body"]["error"]["message"].lower()
    assert (await sock.request("ping"))["status"] == 200
    async with alice.http() as http:
        r = await http.post(
            "/v1/messages",
            content=frame[frame.index('{"id":"\\ud800"') : -1].encode(),
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 422, r.text
    assert "unicode" in r.json()["error"]["message"].lower()
    await sock.close()
