"""Accounts, devices, keys, profiles, contacts, presence privacy and groups, end to end.

Every request goes through uvicorn and the real app; the only shortcut is reading the
dev-mode OTP outbox for codes.
"""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from harness import (
    Device,
    Gateway,
    b64,
    body_text,
    ciphertexts,
    new_phone,
    online,
    raw_public,
    register,
)


def error_of(r: httpx.Response) -> dict[str, Any]:
    """The ``{"error": {code, message}}`` body, checked for shape."""
    body = r.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str), error
    assert error["code"], error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    return error


def wrong_code(right: str) -> str:
    return f"{(int(right) + 1) % 1_000_000:06d}"


# one-time codes ----------------------------------------------------------------------
async def test_wrong_otp_is_401_and_five_wrong_attempts_burn_the_code(gateway: Gateway) -> None:
    phone = new_phone()
    async with gateway.http() as http:
        r = await http.post("/v1/auth/code", json={"phone": phone})
        assert r.status_code == 202, r.text
        right = gateway.code_for(phone)
        attempt = {"phone": phone, "code": wrong_code(right), "registration_id": 1}
        for _ in range(5):
            r = await http.post("/v1/auth/register", json=attempt)
            assert r.status_code == 401, r.text
            assert error_of(r)["code"] == "unauthorized"
            assert r.headers["WWW-Authenticate"] == "Bearer"
        r = await http.post("/v1/auth/register", json=attempt)
        assert r.status_code == 429, r.text
        assert error_of(r)["code"] == "rate_limited"
        # The code is burned: even the right one is refused now.
        r = await http.post("/v1/auth/register", json={**attempt, "code": right})
        assert r.status_code in (401, 429), r.text
        assert "access_token" not in r.json()

        # A fresh code resets the counter and works.
        r = await http.post("/v1/auth/code", json={"phone": phone})
        assert r.status_code == 202, r.text
        fresh = gateway.code_for(phone)
        r = await http.post("/v1/auth/register", json={**attempt, "code": fresh})
        assert r.status_code == 200, r.text
        assert r.json()["device_id"] == 1


async def test_right_otp_is_single_use(gateway: Gateway) -> None:
    phone = new_phone()
    async with gateway.http() as http:
        await http.post("/v1/auth/code", json={"phone": phone})
        body = {"phone": phone, "code": gateway.code_for(phone), "registration_id": 1}
        r = await http.post("/v1/auth/register", json=body)
        assert r.status_code == 200, r.text
        r = await http.post("/v1/auth/register", json=body)
        assert r.status_code == 401, r.text
        assert error_of(r)["code"] == "unauthorized"


async def test_otp_requests_are_rate_limited_per_phone_with_retry_after(
    gateway: Gateway,
) -> None:
    phone, other = new_phone(), new_phone()
    async with gateway.http() as http:
        for _ in range(3):  # the burst
            r = await http.post("/v1/auth/code", json={"phone": phone})
            assert r.status_code == 202, r.text
            assert r.json()["expires_in"] > 0
        r = await http.post("/v1/auth/code", json={"phone": phone})
        assert r.status_code == 429, r.text
        assert error_of(r)["code"] == "rate_limited"
        retry_after = int(r.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        # Another number has its own bucket.
        r = await http.post("/v1/auth/code", json={"phone": other})
        assert r.status_code == 202, r.text


async def test_otp_request_with_non_e164_phone_is_400(gateway: Gateway) -> None:
    async with gateway.http() as http:
        r = await http.post("/v1/auth/code", json={"phone": "0012345678"})
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "invalid_input"


# tokens ------------------------------------------------------------------------------
async def test_refresh_rotates_tokens_and_spends_the_old_refresh_token(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with gateway.http() as http:
        r = await http.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        assert r.status_code == 200, r.text
        fresh = r.json()
        assert fresh["user_id"] == alice.user_id
        assert fresh["device_id"] == 1
        assert fresh["token_type"] == "bearer"
        assert fresh["access_token"] != alice.access_token
        assert fresh["refresh_token"] != alice.refresh_token
        # An access token is not a refresh token. (The spent refresh token presented
        # again revokes the family: see the next test.)
        r = await http.post("/v1/auth/refresh", json={"refresh_token": fresh["access_token"]})
        assert r.status_code == 401, r.text

    async with gateway.http(fresh["access_token"]) as http:
        r = await http.get("/v1/users/me")
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == alice.user_id


async def test_a_reused_refresh_token_revokes_every_token_of_its_family(gateway: Gateway) -> None:
    alice = await register(gateway)
    laptop = await alice.link()  # another device: a family of its own
    async with gateway.http() as http:
        r = await http.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        assert r.status_code == 200, r.text
        first = r.json()
        r = await http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert r.status_code == 200, r.text
        newest = r.json()
        # A stolen, already rotated refresh token comes back: two parties hold the family.
        r = await http.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        assert r.status_code == 401, r.text
        error = error_of(r)
        assert error["code"] == "unauthorized"
        assert "already used" in error["message"], error
        r = await http.post("/v1/auth/refresh", json={"refresh_token": newest["refresh_token"]})
        assert r.status_code == 401, r.text
    for access in (alice.access_token, first["access_token"], newest["access_token"]):
        async with gateway.http(access) as http:
            r = await http.get("/v1/users/me")
        assert r.status_code == 401, r.text
    async with laptop.http() as http:
        assert (await http.get("/v1/users/me")).status_code == 200
    async with gateway.http() as http:
        r = await http.post("/v1/auth/refresh", json={"refresh_token": laptop.refresh_token})
    assert r.status_code == 200, r.text


async def test_logout_revokes_access_and_refresh_tokens(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        assert (await http.get("/v1/users/me")).status_code == 200
        r = await http.post("/v1/auth/logout")
        assert r.status_code == 204, r.text
        r = await http.get("/v1/users/me")
        assert r.status_code == 401, r.text
        assert error_of(r)["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"
    async with gateway.http() as http:
        r = await http.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert r.status_code == 401, r.text


# devices -----------------------------------------------------------------------------
async def test_an_account_links_up_to_six_devices_and_the_seventh_is_refused(
    gateway: Gateway,
) -> None:
    primary = await register(gateway)
    linked = [await primary.link(f"device-{i}") for i in range(5)]
    assert sorted(d.device_id for d in linked) == [2, 3, 4, 5, 6]

    async with primary.http() as http:
        r = await http.post("/v1/devices/link-code")
        assert r.status_code == 200, r.text
        code = r.json()["code"]
    async with gateway.http() as http:
        r = await http.post(
            "/v1/devices/link", json={"code": code, "device_name": "seventh", "registration_id": 9}
        )
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] == "limit_exceeded"

    async with primary.http() as http:
        r = await http.get("/v1/devices")
    assert r.status_code == 200
    devices = r.json()["devices"]
    assert len(devices) == 6
    assert [d["primary"] for d in devices].count(True) == 1


async def test_a_link_code_works_once(gateway: Gateway) -> None:
    primary = await register(gateway)
    async with primary.http() as http:
        code = (await http.post("/v1/devices/link-code")).json()["code"]
    body = {"code": code, "device_name": "tablet", "registration_id": 5}
    async with gateway.http() as http:
        assert (await http.post("/v1/devices/link", json=body)).status_code == 200
        r = await http.post("/v1/devices/link", json=body)
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "unauthorized"


async def test_a_linked_device_cannot_set_the_identity_key_or_create_link_codes(
    gateway: Gateway,
) -> None:
    primary = await register(gateway)
    await primary.publish_keys()
    laptop = await primary.link()
    async with laptop.http() as http:
        r = await http.put(
            "/v1/keys/identity",
            json={"identity_key": b64(raw_public(Ed25519PrivateKey.generate()))},
        )
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "forbidden"
        r = await http.post("/v1/devices/link-code")
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "forbidden"
    # It can still publish its own prekeys, signed by the account identity.
    await laptop.publish_keys(one_time=2)
    assert sorted(await primary.devices_of(primary.user_id)) == [1, laptop.device_id]


async def test_unlinking_a_device_removes_it_and_revokes_its_token(gateway: Gateway) -> None:
    primary = await register(gateway)
    laptop = await primary.link("laptop")
    phone = await primary.link("phone")
    async with laptop.http() as http:
        assert (await http.get("/v1/users/me")).status_code == 200
        # A linked device may not unlink a sibling.
        r = await http.delete(f"/v1/devices/{phone.device_id}")
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "forbidden"
    async with primary.http() as http:
        r = await http.delete(f"/v1/devices/{laptop.device_id}")
        assert r.status_code == 204, r.text
        r = await http.get("/v1/devices")
        assert [d["device_id"] for d in r.json()["devices"]] == [1, phone.device_id]
        r = await http.delete("/v1/devices/1")
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "forbidden"
    async with laptop.http() as http:
        r = await http.get("/v1/users/me")
    assert r.status_code == 401, r.text
    async with gateway.http() as http:
        r = await http.post("/v1/auth/refresh", json={"refresh_token": laptop.refresh_token})
    assert r.status_code == 401, r.text


async def test_a_linked_device_may_unlink_itself(gateway: Gateway) -> None:
    primary = await register(gateway)
    laptop = await primary.link()
    async with laptop.http() as http:
        r = await http.delete(f"/v1/devices/{laptop.device_id}")
        assert r.status_code == 204, r.text
        assert (await http.get("/v1/users/me")).status_code == 401


# keys --------------------------------------------------------------------------------
async def test_signed_prekey_with_a_bad_signature_is_400(gateway: Gateway) -> None:
    alice = await register(gateway)
    await alice.publish_keys()
    prekey = raw_public(X25519PrivateKey.generate())
    impostor = Ed25519PrivateKey.generate()
    async with alice.http() as http:
        r = await http.put(
            "/v1/keys/signed",
            json={"key_id": 2, "public_key": b64(prekey), "signature": b64(impostor.sign(prekey))},
        )
        assert r.status_code == 400, r.text
        error = error_of(r)
        assert error["code"] == "invalid_input"
        assert "signature" in error["message"]
        # A signature over different bytes fails too.
        assert alice.identity is not None
        other = raw_public(X25519PrivateKey.generate())
        r = await http.put(
            "/v1/keys/signed",
            json={
                "key_id": 2,
                "public_key": b64(prekey),
                "signature": b64(alice.identity.sign(other)),
            },
        )
        assert r.status_code == 400, r.text
    # The earlier, valid signed prekey is still what others get.
    bob = await register(gateway)
    async with bob.http() as http:
        r = await http.get(f"/v1/keys/{alice.user_id}")
    assert r.status_code == 200, r.text
    assert r.json()["devices"][0]["signed_prekey"]["key_id"] == 1


async def test_signed_prekey_before_identity_key_is_409(gateway: Gateway) -> None:
    alice = await register(gateway)
    prekey = raw_public(X25519PrivateKey.generate())
    signer = Ed25519PrivateKey.generate()
    async with alice.http() as http:
        r = await http.put(
            "/v1/keys/signed",
            json={"key_id": 1, "public_key": b64(prekey), "signature": b64(signer.sign(prekey))},
        )
    assert r.status_code == 409, r.text
    assert error_of(r)["code"] == "conflict"


async def test_one_time_prekey_batches_are_capped_at_100(gateway: Gateway) -> None:
    alice = await register(gateway)
    await alice.publish_keys(one_time=0)

    def batch(n: int, first: int) -> dict[str, Any]:
        return {
            "prekeys": [
                {"key_id": first + i, "public_key": b64(raw_public(X25519PrivateKey.generate()))}
                for i in range(n)
            ]
        }

    async with alice.http() as http:
        r = await http.post("/v1/keys/one-time", json=batch(101, 1))
        assert r.status_code == 422, r.text
        assert error_of(r)["code"] == "invalid_input"
        assert (await http.get("/v1/keys/count")).json() == {"count": 0}

        r = await http.post("/v1/keys/one-time", json=batch(100, 1))
        assert r.status_code == 200, r.text
        assert (await http.get("/v1/keys/count")).json() == {"count": 100}


async def test_prekeys_are_32_byte_keys_or_33_with_the_0x05_type_byte(gateway: Gateway) -> None:
    alice = await register(gateway)
    await alice.publish_keys(one_time=0)
    assert alice.identity is not None
    key = raw_public(X25519PrivateKey.generate())
    refused = {"33 bytes, no type byte": b"\x00" + key, "31 bytes": key[:31]}
    async with alice.http() as http:
        for what, raw in refused.items():
            r = await http.post(
                "/v1/keys/one-time", json={"prekeys": [{"key_id": 1, "public_key": b64(raw)}]}
            )
            assert r.status_code == 400, (what, r.text)
            error = error_of(r)
            assert error["code"] == "invalid_input"
            assert "0x05" in error["message"], error
            signed = {
                "key_id": 2,
                "public_key": b64(raw),
                "signature": b64(alice.identity.sign(raw)),
            }
            r = await http.put("/v1/keys/signed", json=signed)
            assert r.status_code == 400, (what, r.text)
            assert error_of(r)["code"] == "invalid_input"
        assert (await http.get("/v1/keys/count")).json() == {"count": 0}
        accepted = [
            {"key_id": 1, "public_key": b64(key)},
            {"key_id": 2, "public_key": b64(b"\x05" + key)},
        ]
        r = await http.post("/v1/keys/one-time", json={"prekeys": accepted})
        assert r.status_code == 200, r.text
        assert r.json() == {"count": 2}


async def test_a_signed_prekey_signature_covers_the_public_key_bytes_as_uploaded(
    gateway: Gateway,
) -> None:
    """The 33-byte form (``0x05 || key``) is signed as 33 bytes: a signature over the
    inner 32 bytes does not verify, and the other way round."""
    alice = await register(gateway)
    await alice.publish_keys(one_time=0)
    assert alice.identity is not None
    key = raw_public(X25519PrivateKey.generate())
    typed = b"\x05" + key
    async with alice.http() as http:
        for uploaded, signed_over, status in (
            (typed, key, 400),
            (key, typed, 400),
            (typed, typed, 204),
            (key, key, 204),
        ):
            body = {
                "key_id": 2,
                "public_key": b64(uploaded),
                "signature": b64(alice.identity.sign(signed_over)),
            }
            r = await http.put("/v1/keys/signed", json=body)
            assert r.status_code == status, (len(uploaded), len(signed_over), r.text)


async def test_an_account_without_keys_is_sent_to_but_has_no_bundle(gateway: Gateway) -> None:
    """Publishing keys is not required to receive: the server checks device lists, never
    keys, so a send to a keyless account is accepted and delivered; but its bundle
    answers 404 until it has an identity key and a device with a signed prekey."""
    alice, bob = await register(gateway), await register(gateway)
    await alice.publish_keys()
    async with alice.http() as http:
        r = await http.get(f"/v1/keys/{bob.user_id}")
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"
        body = {"id": "k1", "to": {"user": bob.user_id}}
        body["ciphertexts"] = ciphertexts({bob.user_id: [1]}, "before any keys")
        r = await http.post("/v1/messages", json=body)
        assert r.status_code == 200, r.text
    bob_ws = await online(bob)
    try:
        (delivery,) = await bob_ws.deliveries(1)
        assert body_text(delivery) == "before any keys"
    finally:
        await bob_ws.close()
    # An identity key alone is not enough: no device has a signed prekey yet.
    bob.identity = Ed25519PrivateKey.generate()
    async with bob.http() as http:
        r = await http.put(
            "/v1/keys/identity", json={"identity_key": b64(raw_public(bob.identity))}
        )
        assert r.status_code == 204, r.text
    async with alice.http() as http:
        r = await http.get(f"/v1/keys/{bob.user_id}")
        assert r.status_code == 404, r.text
        assert "signed prekey" in error_of(r)["message"]


async def test_bundle_fetch_claims_one_time_prekeys_until_none_are_left(gateway: Gateway) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    await bob.publish_keys(one_time=2)
    async with alice.http() as http:
        claimed = []
        for _ in range(3):
            r = await http.get(f"/v1/keys/{bob.user_id}/1")
            assert r.status_code == 200, r.text
            claimed.append(r.json()["devices"][0]["one_time_prekey"])
        r = await http.get(f"/v1/keys/{bob.user_id}/7")
        assert r.status_code == 404, r.text
        r = await http.get(f"/v1/keys/{alice.user_id}")  # alice published nothing
        assert r.status_code == 404, r.text
    assert [c["key_id"] for c in claimed[:2]] == [1, 2]
    assert claimed[2] is None
    async with bob.http() as http:
        assert (await http.get("/v1/keys/count")).json() == {"count": 0}


# discovery, profiles, contacts ------------------------------------------------------
async def test_discovery_by_phone_finds_registered_numbers_only(gateway: Gateway) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    stranger = new_phone()
    async with alice.http() as http:
        r = await http.post("/v1/directory/lookup", json={"phones": [bob.phone, stranger]})
        assert r.status_code == 200, r.text
        assert r.json() == {"users": {bob.phone: bob.user_id}}
        r = await http.post("/v1/directory/lookup", json={"phones": ["not-a-phone"]})
        assert r.status_code == 400, r.text
        assert error_of(r)["code"] == "invalid_input"


async def test_profile_patch_is_visible_to_me_and_others(gateway: Gateway) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    async with alice.http() as http:
        r = await http.patch("/v1/users/me", json={"display_name": "Alice", "about": "hi"})
        assert r.status_code == 200, r.text
        r = await http.patch("/v1/users/me", json={"presence_privacy": "nobody"})
        assert r.status_code == 200, r.text
        me = (await http.get("/v1/users/me")).json()
        assert me == {
            "user_id": alice.user_id,
            "display_name": "Alice",
            "about": "hi",
            "phone": alice.phone,
            "presence_privacy": "nobody",
        }
        r = await http.patch("/v1/users/me", json={"display_name": "x" * 65})
        assert r.status_code == 422, r.text
        r = await http.patch("/v1/users/me", json={"presence_privacy": "friends"})
        assert r.status_code == 422, r.text
        assert (await http.get("/v1/users/me")).json()["display_name"] == "Alice"
    async with bob.http() as http:
        r = await http.get(f"/v1/users/{alice.user_id}")
        assert r.status_code == 200, r.text
        # Others see the profile, never the phone number.
        assert r.json() == {"user_id": alice.user_id, "display_name": "Alice", "about": "hi"}
        r = await http.get("/v1/users/no-such-user")
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"


async def test_contacts_add_list_and_remove(gateway: Gateway) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    carol = await register(gateway)
    async with alice.http() as http:
        assert (await http.get("/v1/contacts")).json() == {"contacts": []}
        r = await http.put("/v1/contacts", json={"user_ids": [bob.user_id, carol.user_id]})
        assert r.status_code == 200, r.text
        assert sorted(r.json()["contacts"]) == sorted([bob.user_id, carol.user_id])
        r = await http.put("/v1/contacts", json={"user_ids": [bob.user_id]})  # idempotent
        assert sorted(r.json()["contacts"]) == sorted([bob.user_id, carol.user_id])

        r = await http.delete(f"/v1/contacts/{bob.user_id}")
        assert r.status_code == 204, r.text
        assert (await http.get("/v1/contacts")).json() == {"contacts": [carol.user_id]}

        r = await http.put("/v1/contacts", json={"user_ids": [alice.user_id]})
        assert r.status_code == 400, r.text
        assert error_of(r)["code"] == "invalid_input"
        r = await http.put("/v1/contacts", json={"user_ids": ["ghost"]})
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"
        assert (await http.get("/v1/contacts")).json() == {"contacts": [carol.user_id]}
    # Contacts are one-way: bob's list is untouched.
    async with bob.http() as http:
        assert (await http.get("/v1/contacts")).json() == {"contacts": []}


# presence privacy --------------------------------------------------------------------
async def test_presence_with_contacts_privacy_is_hidden_from_strangers_and_live_for_contacts(
    gateway: Gateway,
) -> None:
    carol = await register(gateway)  # the person being watched
    friend = await register(gateway)
    stranger = await register(gateway)
    async with carol.http() as http:
        r = await http.patch("/v1/users/me", json={"presence_privacy": "contacts"})
        assert r.status_code == 200, r.text
        r = await http.put("/v1/contacts", json={"user_ids": [friend.user_id]})
        assert r.status_code == 200, r.text

    friend_ws = await friend.connect()
    stranger_ws = await stranger.connect()
    try:
        reply = await stranger_ws.request("presence.subscribe", {"users": [carol.user_id]})
        assert reply["status"] == 200, reply
        assert reply["body"]["presence"] == [{"user": carol.user_id, "visible": False}]

        reply = await friend_ws.request("presence.subscribe", {"users": [carol.user_id]})
        assert reply["status"] == 200, reply
        (seen,) = reply["body"]["presence"]
        assert seen["user"] == carol.user_id
        assert seen["visible"] is True
        assert seen["online"] is False

        carol_ws = await carol.connect()
        event = await friend_ws.frame("presence")
        assert event["body"]["user"] == carol.user_id
        assert event["body"]["online"] is True

        await carol_ws.close()
        event = await friend_ws.frame("presence")
        assert event["body"]["user"] == carol.user_id
        assert event["body"]["online"] is False
        assert event["body"]["last_seen"] is not None

        await stranger_ws.nothing_for("presence", 0.5)
    finally:
        await friend_ws.close()
        await stranger_ws.close()


async def test_presence_privacy_nobody_hides_presence_even_from_contacts(
    gateway: Gateway,
) -> None:
    carol = await register(gateway)
    friend = await register(gateway)
    async with carol.http() as http:
        await http.put("/v1/contacts", json={"user_ids": [friend.user_id]})
        r = await http.patch("/v1/users/me", json={"presence_privacy": "nobody"})
        assert r.status_code == 200, r.text
    friend_ws = await friend.connect()
    try:
        reply = await friend_ws.request("presence.subscribe", {"users": [carol.user_id]})
        assert reply["body"]["presence"] == [{"user": carol.user_id, "visible": False}]
        carol_ws = await carol.connect()
        await friend_ws.nothing_for("presence", 0.5)
        await carol_ws.close()
    finally:
        await friend_ws.close()


# groups ------------------------------------------------------------------------------
async def create_group(owner: Device, *members: Device, name: str = "team") -> dict[str, Any]:
    async with owner.http() as http:
        r = await http.post(
            "/v1/groups", json={"name": name, "members": [m.user_id for m in members]}
        )
    assert r.status_code == 201, r.text
    group: dict[str, Any] = r.json()
    return group


async def test_only_group_admins_add_remove_and_promote(gateway: Gateway) -> None:
    alice, bob, carol, dave = [await register(gateway) for _ in range(4)]
    group = await create_group(alice, bob, carol)
    gid = group["group_id"]
    assert group["members"] == {
        alice.user_id: "admin",
        bob.user_id: "member",
        carol.user_id: "member",
    }

    async with bob.http() as http:
        r = await http.post(f"/v1/groups/{gid}/members", json={"user_ids": [dave.user_id]})
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "forbidden"
        r = await http.delete(f"/v1/groups/{gid}/members/{carol.user_id}")
        assert r.status_code == 403, r.text
        r = await http.put(f"/v1/groups/{gid}/admins/{bob.user_id}")
        assert r.status_code == 403, r.text
        r = await http.get(f"/v1/groups/{gid}")
        assert r.status_code == 200, r.text
        assert r.json()["members"] == group["members"]  # nothing changed

    async with alice.http() as http:
        r = await http.delete(f"/v1/groups/{gid}/members/{carol.user_id}")
        assert r.status_code == 200, r.text
        assert carol.user_id not in r.json()["members"]
        r = await http.post(f"/v1/groups/{gid}/members", json={"user_ids": ["ghost"]})
        assert r.status_code == 404, r.text
    async with carol.http() as http:
        r = await http.get(f"/v1/groups/{gid}")
    assert r.status_code == 404, r.text


async def test_non_members_get_404_for_a_group(gateway: Gateway) -> None:
    alice, bob, outsider = [await register(gateway) for _ in range(3)]
    gid = (await create_group(alice, bob))["group_id"]
    async with outsider.http() as http:
        r = await http.get(f"/v1/groups/{gid}")
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"
        r = await http.post(f"/v1/groups/{gid}/members", json={"user_ids": [outsider.user_id]})
        assert r.status_code == 404, r.text
        # Indistinguishable from a group that does not exist.
        r2 = await http.get("/v1/groups/00000000-0000-0000-0000-000000000000")
        assert r2.status_code == 404, r2.text


async def test_a_promoted_member_can_add_members(gateway: Gateway) -> None:
    alice, bob, carol = [await register(gateway) for _ in range(3)]
    gid = (await create_group(alice, bob))["group_id"]
    async with alice.http() as http:
        r = await http.put(f"/v1/groups/{gid}/admins/{bob.user_id}")
        assert r.status_code == 200, r.text
        assert r.json()["members"][bob.user_id] == "admin"
    async with bob.http() as http:
        r = await http.post(f"/v1/groups/{gid}/members", json={"user_ids": [carol.user_id]})
        assert r.status_code == 200, r.text
        assert r.json()["members"][carol.user_id] == "member"
        # And can demote the original admin.
        r = await http.delete(f"/v1/groups/{gid}/admins/{alice.user_id}")
        assert r.status_code == 200, r.text
        assert r.json()["members"][alice.user_id] == "member"
    async with carol.http() as http:
        r = await http.get(f"/v1/groups/{gid}")
    assert r.status_code == 200, r.text
    assert set(r.json()["members"]) == {alice.user_id, bob.user_id, carol.user_id}


async def test_the_last_admin_cannot_demote_themselves(gateway: Gateway) -> None:
    alice, bob = await register(gateway), await register(gateway)
    gid = (await create_group(alice, bob))["group_id"]
    async with alice.http() as http:
        r = await http.delete(f"/v1/groups/{gid}/admins/{alice.user_id}")
        assert r.status_code == 409, r.text
        assert error_of(r)["code"] == "conflict"
        r = await http.get(f"/v1/groups/{gid}")
    assert r.json()["members"][alice.user_id] == "admin"


async def test_when_the_last_admin_leaves_another_member_becomes_admin(gateway: Gateway) -> None:
    alice, bob, carol = [await register(gateway) for _ in range(3)]
    gid = (await create_group(alice, bob, carol))["group_id"]
    async with alice.http() as http:
        r = await http.post(f"/v1/groups/{gid}/leave")
        assert r.status_code == 204, r.text
        r = await http.get(f"/v1/groups/{gid}")
        assert r.status_code == 404, r.text
    async with bob.http() as http:
        r = await http.get(f"/v1/groups/{gid}")
    assert r.status_code == 200, r.text
    members = r.json()["members"]
    assert set(members) == {bob.user_id, carol.user_id}
    admins = [u for u, role in members.items() if role == "admin"]
    assert admins == [min(bob.user_id, carol.user_id)]


async def test_a_provisioning_blob_is_relayed_once_and_bad_input_is_refused(
    gateway: Gateway,
) -> None:
    """The primary leaves a blob for a new device's link request; the device (no token
    yet) takes it once. Addresses and blobs of the wrong shape are 422, a second
    approval 409, a linked device 403, and nothing left yet 404."""
    primary = await register(gateway)
    laptop = await primary.link()
    address = "A" * 42 + "Q"
    blob = {"blob": "tidings-provision:1:" + "x" * 100}
    async with gateway.http() as anonymous:
        r = await anonymous.get(f"/v1/devices/provisioning/{address}")
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"
    async with laptop.http() as http:
        r = await http.put(f"/v1/devices/provisioning/{address}", json=blob)
        assert r.status_code == 403, r.text
    async with primary.http() as http:
        for bad_address, body in (
            ("short", blob),
            ("A" * 42 + "!", blob),
            (address, {"blob": "not a blob"}),
            (address, {"blob": "tidings-provision:1:" + "x" * 3000}),
        ):
            r = await http.put(f"/v1/devices/provisioning/{bad_address}", json=body)
            assert r.status_code in (404, 422), (bad_address, r.text)
        r = await http.put(f"/v1/devices/provisioning/{address}", json=blob)
        assert r.status_code == 204, r.text
        r = await http.put(f"/v1/devices/provisioning/{address}", json=blob)
        assert r.status_code == 409, r.text
    async with gateway.http() as anonymous:
        r = await anonymous.get(f"/v1/devices/provisioning/{address}")
        assert r.status_code == 200, r.text
        assert r.json() == blob
        r = await anonymous.get(f"/v1/devices/provisioning/{address}")
        assert r.status_code == 404, r.text
        r = await anonymous.get("/v1/devices/provisioning/short")
        assert r.status_code == 422, r.text
