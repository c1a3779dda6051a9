"""Bad input gets a clear 4xx with a message, never a 500 or a dropped connection.

REST errors are ``{"error": {"code", "message"}}`` bodies; WebSocket errors are
``response`` frames carrying the same body, after which the socket keeps working.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness import (
    Device,
    Gateway,
    Socket,
    body_text,
    ciphertexts,
    new_phone,
    online,
    register,
    run_gateway,
)
from tidings import server
from tidings.bootstrap import create_apps
from tidings.client.http import Api, Tokens
from tidings.config import Settings

KIB = 1024
LIMIT = 96 * KIB


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str), error
    assert error["code"], error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    return error


def send_body(to: Device, text: str = "hello", client_id: str = "m1") -> dict[str, Any]:
    return {
        "id": client_id,
        "to": {"user": to.user_id},
        "ciphertexts": ciphertexts({to.user_id: [1]}, text),
    }


async def pair(gateway: Gateway) -> tuple[Device, Device]:
    return await register(gateway), await register(gateway)


# body size -----------------------------------------------------------------------------
async def test_message_body_over_96_kib_with_content_length_is_413(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    body = send_body(bob)
    body["ciphertexts"][bob.user_id][0]["body"] = "A" * (LIMIT + 4)
    raw = json.dumps(body).encode()
    assert len(raw) > LIMIT
    async with alice.http() as http:
        r = await http.post(
            "/v1/messages", content=raw, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413, r.text
        error = error_of(r)
        assert error["code"] == "payload_too_large"
        assert str(LIMIT) in error["message"]
        # The connection and the service are fine afterwards.
        r = await http.post("/v1/messages", json=send_body(bob))
        assert r.status_code == 200, r.text


async def test_chunked_message_body_over_96_kib_without_content_length_is_413(
    gateway: Gateway,
) -> None:
    alice, bob = await pair(gateway)
    body = send_body(bob)
    body["ciphertexts"][bob.user_id][0]["body"] = "A" * (2 * LIMIT)
    raw = json.dumps(body).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 8 * KIB):
            yield raw[start : start + 8 * KIB]

    async with alice.http() as http:
        request = http.build_request(
            "POST", "/v1/messages", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        r = await http.send(request)
        assert r.status_code == 413, r.text
        assert error_of(r)["code"] == "payload_too_large"
    async with alice.http() as http:
        r = await http.post("/v1/messages", json=send_body(bob))
    assert r.status_code == 200, r.text


async def test_chunked_message_body_under_the_limit_is_accepted(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    raw = json.dumps(send_body(bob)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 16):
            yield raw[start : start + 16]

    async with alice.http() as http:
        r = await http.post(
            "/v1/messages", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 200, r.text


async def test_oversized_body_on_any_rest_route_is_413(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        r = await http.post(
            "/v1/groups", json={"name": "x", "members": ["u" * 60] * (LIMIT // 60 + 10)}
        )
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "payload_too_large"


# malformed bodies ----------------------------------------------------------------------
async def test_malformed_json_is_400(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        for raw in (b'{"id": "m1", "to": ', b"not json at all", b'{"id": "m1",}'):
            r = await http.post(
                "/v1/messages", content=raw, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 400, (raw, r.text)
            assert error_of(r)["code"] == "malformed_json"


async def test_lone_surrogate_escapes_in_json_are_a_4xx(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    template = json.dumps(send_body(bob))
    async with alice.http() as http:
        for raw in (
            template.replace('"m1"', '"\\ud800"'),
            template.replace(bob.user_id, "\\udfff" + bob.user_id),
        ):
            r = await http.post(
                "/v1/messages", content=raw.encode(), headers={"Content-Type": "application/json"}
            )
            assert 400 <= r.status_code < 500, (raw[:80], r.text)
            assert error_of(r)["code"] == "invalid_input"
        r = await http.post("/v1/messages", json=send_body(bob))
    assert r.status_code == 200, r.text


async def test_unknown_field_is_422_and_names_the_field(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    async with alice.http() as http:
        r = await http.post("/v1/messages", json={**send_body(bob), "priority": "high"})
        assert r.status_code == 422, r.text
        error = error_of(r)
        assert error["code"] == "invalid_input"
        assert "priority" in error["message"]
        assert any(e["field"] == "priority" for e in error["details"]["errors"])
        r = await http.patch("/v1/users/me", json={"nickname": "al"})
        assert r.status_code == 422, r.text
        assert "nickname" in error_of(r)["message"]


async def test_wrong_json_types_are_422(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    phone_body = {"phone": "+15550001111", "code": "123456", "registration_id": 1}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/v1/auth/register", {**phone_body, "registration_id": "1"}),  # string for int
        ("/v1/auth/register", {**phone_body, "code": 123456}),  # int for string
        ("/v1/auth/code", {"phone": 15550001111}),
        ("/v1/messages", {**send_body(bob), "id": 5}),
        ("/v1/messages", {**send_body(bob), "to": "bob"}),
        ("/v1/messages", {**send_body(bob), "ciphertexts": [1, 2]}),
        ("/v1/groups", {"name": ["a"]}),
        ("/v1/groups", {"name": "g", "members": "everyone"}),
        ("/v1/media", {"size": "10"}),
        ("/v1/media", {"size": 1.5}),
        ("/v1/media", {"size": True}),
    ]
    async with alice.http() as http:
        for path, body in cases:
            r = await http.post(path, json=body)
            assert r.status_code == 422, (path, body, r.text)
            assert error_of(r)["code"] == "invalid_input", (path, body)


async def test_a_json_value_that_is_not_an_object_is_422(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        for value in ([], "text", 3, None):
            r = await http.post("/v1/messages", json=value)
            assert r.status_code == 422, (value, r.text)
            assert error_of(r)["code"] == "invalid_input"


async def test_send_naming_both_user_and_group_is_422(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    async with alice.http() as http:
        body = {**send_body(bob), "to": {"user": bob.user_id, "group": "g"}}
        r = await http.post("/v1/messages", json=body)
        assert r.status_code == 422, r.text
        body = {**send_body(bob), "ciphertexts": {}}
        r = await http.post("/v1/messages", json=body)
        assert r.status_code == 422, r.text


# tokens --------------------------------------------------------------------------------
async def test_missing_or_garbage_bearer_tokens_are_401_with_www_authenticate(
    gateway: Gateway,
) -> None:
    alice = await register(gateway)
    forged = base64.urlsafe_b64encode(b"\x00" * 32).decode().rstrip("=")  # right shape
    headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer \tx"},
        {"Authorization": f"Basic {alice.access_token}"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {alice.refresh_token}"},  # wrong kind of token
        {"Authorization": "Bearer " + "x" * 4000},
    ]
    async with gateway.http() as http:
        for h in headers:
            r = await http.get("/v1/users/me", headers=h)
            assert r.status_code == 401, (h, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer", h
            assert error_of(r)["code"] == "unauthorized"
        r = await http.post("/v1/messages", json={"id": "m"})
        # Validation may run first or auth may; either way it is a clean 4xx.
        assert r.status_code in (401, 422), r.text


@contextlib.asynccontextmanager
async def clocked_gateway(data_dir: Path) -> AsyncIterator[tuple[Gateway, list[float]]]:
    """A gateway whose clock is ``time.time() + skew[0]`` (the test moves ``skew``)."""
    skew = [0.0]
    apps = create_apps(
        Settings(data_dir=data_dir, inbox_poll_interval=0.5), clock=lambda: time.time() + skew[0]
    )
    serving = await server.serve(
        apps.client, apps.ops, host="127.0.0.1", port=0, ops_port=0, log_level="warning"
    )
    try:
        yield Gateway(serving.url, data_dir, serving.client, ops_url=serving.ops_url), skew
    finally:
        await serving.stop()


async def test_expired_access_token_is_401_and_says_to_refresh(tmp_path: Path) -> None:
    async with clocked_gateway(tmp_path / "data") as (gw, skew):
        alice = await register(gw)
        skew[0] = 3600 + 5
        async with alice.http() as http:
            r = await http.get("/v1/users/me")
            assert r.status_code == 401, r.text
            assert r.headers["WWW-Authenticate"] == "Bearer"
            error = error_of(r)
            assert error["code"] == "unauthorized"
            assert "expired" in error["message"]
            assert "refresh" in error["message"]
        async with gw.http() as http:
            r = await http.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
            assert r.status_code == 200, r.text
        async with gw.http(r.json()["access_token"]) as http:
            assert (await http.get("/v1/users/me")).status_code == 200


async def test_the_sdk_refreshes_once_for_requests_refused_together(tmp_path: Path) -> None:
    """Two calls whose access token expired both get 401; the SDK trades the refresh token
    once (a second trade of the spent token would revoke every token of the device)."""
    async with clocked_gateway(tmp_path / "data") as (gw, skew):
        alice = await register(gw)
        tokens = Tokens(alice.user_id, 1, alice.access_token, alice.refresh_token)
        api = Api(gw.url, tokens)
        try:
            skew[0] = 3600 + 5
            answers = await asyncio.gather(*(api.call("GET", "/v1/users/me") for _ in range(4)))
            assert {a["user_id"] for a in answers} == {alice.user_id}
            assert api.tokens is not None
            assert api.tokens.refresh_token != alice.refresh_token
            assert (await api.call("GET", "/v1/users/me"))["user_id"] == alice.user_id
        finally:
            await api.close()


# semantic errors -----------------------------------------------------------------------
async def test_non_base64_ciphertext_is_400(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    async with alice.http() as http:
        for junk in ("not base64!!", "QUJ", "QUJ\u00e9RA=="):
            body = send_body(bob)
            body["ciphertexts"][bob.user_id][0]["body"] = junk
            r = await http.post("/v1/messages", json=body)
            assert r.status_code == 400, (junk, r.text)
            error = error_of(r)
            assert error["code"] == "invalid_input"
            assert "base64" in error["message"]


async def test_sending_to_a_missing_user_or_a_foreign_group_is_404(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    async with bob.http() as http:
        r = await http.post("/v1/groups", json={"name": "bob only"})
        assert r.status_code == 201, r.text
        foreign = r.json()["group_id"]
    async with alice.http() as http:
        body = {**send_body(bob), "to": {"user": "no-such-user"}}
        r = await http.post("/v1/messages", json=body)
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"
        for gid in (foreign, "no-such-group"):
            r = await http.post(
                "/v1/messages", json={"id": "g1", "to": {"group": gid}, "group_body": "QUJD"}
            )
            assert r.status_code == 404, (gid, r.text)
            assert error_of(r)["code"] == "not_found"


async def test_unlinking_a_device_that_does_not_exist_is_404(gateway: Gateway) -> None:
    alice = await register(gateway)
    laptop = await alice.link()
    async with alice.http() as http:
        r = await http.delete("/v1/devices/42")
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"
        r = await http.delete("/v1/devices/laptop")  # device ids are numbers: no such path
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"
        r = await http.get("/v1/devices")
    assert [d["device_id"] for d in r.json()["devices"]] == [1, laptop.device_id]


async def test_unknown_routes_and_methods_get_json_errors(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        r = await http.get("/v1/nothing-here")
        assert r.status_code == 404, r.text
        assert error_of(r)["code"] == "not_found"
        r = await http.delete("/v1/messages")
        assert r.status_code == 405, r.text
        assert error_of(r)["code"] == "method_not_allowed"


async def test_names_with_controls_or_bidi_overrides_are_400(gateway: Gateway) -> None:
    alice = await register(gateway)
    spoofs = ["bob\u202egpj.exe", "nul\x00name", "two\nlines", "iso\u2066late\u2069"]
    phone = new_phone()
    async with gateway.http() as http:
        r = await http.post("/v1/auth/code", json={"phone": phone})
        assert r.status_code == 202, r.text
        body = {"phone": phone, "code": gateway.code_for(phone), "registration_id": 1}
        r = await http.post("/v1/auth/register", json={**body, "device_name": spoofs[0]})
        assert r.status_code == 400, r.text
        assert "device_name contains U+202E" in error_of(r)["message"]
        # The code was not spent on the refused request.
        r = await http.post("/v1/auth/register", json={**body, "device_name": "phone 📱"})
        assert r.status_code == 200, r.text
    async with alice.http() as http:
        code = (await http.post("/v1/devices/link-code")).json()["code"]
        for name in spoofs:
            for path, payload in (
                ("/v1/users/me", {"display_name": name}),
                ("/v1/users/me", {"about": name}),
                ("/v1/groups", {"name": name}),
                ("/v1/devices/link", {"code": code, "device_name": name, "registration_id": 2}),
            ):
                method = "PATCH" if path == "/v1/users/me" else "POST"
                r = await http.request(method, path, json=payload)
                assert r.status_code == 400, (path, name, r.text)
                error = error_of(r)
                assert error["code"] == "invalid_input"
                assert "U+" in error["message"], error
        r = await http.get("/v1/users/me")
        assert r.json()["display_name"] == ""
        r = await http.patch("/v1/users/me", json={"display_name": "Zoë 👩\u200d💻"})
        assert r.status_code == 200, r.text
        r = await http.post("/v1/devices/link", json={**payload, "device_name": "laptop"})
        assert r.status_code == 200, r.text


# WebSocket -----------------------------------------------------------------------------
async def closed_with(gateway: Gateway, **connect: Any) -> int | None:
    ws = await websockets.connect(gateway.ws_url, **connect)
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout=10)
    code: int | None = ws.close_code
    return code


async def test_websocket_with_a_bad_token_is_closed_with_4401(gateway: Gateway) -> None:
    alice = await register(gateway)
    assert await closed_with(gateway) == 4401
    assert (
        await closed_with(gateway, additional_headers={"Authorization": "Bearer garbage"}) == 4401
    )
    query = Gateway(gateway.url, gateway.data_dir)
    ws = await websockets.connect(query.ws_url + "?token=garbage")
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout=10)
    assert ws.close_code == 4401
    # A good token in the query string works.
    ws = await websockets.connect(query.ws_url + f"?token={alice.access_token}")
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert frame["type"] == "queue-empty"
    await ws.close()


async def error_frame(sock: Socket, raw: str | bytes) -> dict[str, Any]:
    """Send ``raw`` as is; the next ``response`` frame must be an error."""
    await sock.ws.send(raw)
    frame = await sock.frame("response")
    assert 400 <= frame["status"] < 500, frame
    error: dict[str, Any] = frame["body"]["error"]
    assert error["code"], frame
    assert error["message"], frame
    return frame


async def assert_usable(sock: Socket) -> None:
    reply = await sock.request("ping")
    assert reply["status"] == 200, reply
    assert isinstance(reply["body"]["time"], int)


async def test_websocket_answers_malformed_frames_with_errors_and_stays_usable(
    gateway: Gateway,
) -> None:
    alice, bob = await pair(gateway)
    sock = await online(alice)
    try:
        frame = await error_frame(sock, "this is not json")
        assert frame["id"] is None
        assert frame["status"] == 400
        await assert_usable(sock)

        frame = await error_frame(sock, json.dumps({"type": "ping"}))  # no id
        assert frame["id"] is None
        assert frame["status"] == 400
        assert "id" in frame["body"]["error"]["message"]
        await assert_usable(sock)

        frame = await error_frame(sock, json.dumps({"id": "x1", "type": "teleport"}))
        assert frame["id"] == "x1"
        assert frame["status"] == 400
        assert "teleport" in frame["body"]["error"]["message"]
        await assert_usable(sock)

        frame = await error_frame(sock, json.dumps({"id": "x2", "type": "ping", "extra": 1}))
        assert frame["id"] == "x2"
        assert frame["status"] == 400
        assert "extra" in frame["body"]["error"]["message"]
        await assert_usable(sock)

        frame = await error_frame(
            sock, json.dumps({"id": "x3", "type": "send", "body": {"id": "m1"}})
        )
        assert frame["id"] == "x3"
        assert frame["status"] == 422
        assert frame["body"]["error"]["code"] == "invalid_input"
        await assert_usable(sock)

        frame = await error_frame(sock, json.dumps({"id": "x4", "type": "send", "body": [1]}))
        assert frame["id"] == "x4"
        assert frame["status"] == 400
        await assert_usable(sock)

        bad = send_body(bob)
        bad["ciphertexts"][bob.user_id][0]["body"] = "!!!"
        frame = await error_frame(sock, json.dumps({"id": "x5", "type": "send", "body": bad}))
        assert frame["id"] == "x5"
        assert frame["status"] == 400
        assert "base64" in frame["body"]["error"]["message"]
        await assert_usable(sock)

        missing = {**send_body(bob), "to": {"user": "ghost"}}
        frame = await error_frame(sock, json.dumps({"id": "x6", "type": "send", "body": missing}))
        assert frame["id"] == "x6"
        assert frame["status"] == 404
        await assert_usable(sock)

        frame = await error_frame(sock, json.dumps({"id": "x7", "type": "response", "status": 200}))
        assert frame["id"] == "x7"
        assert frame["status"] == 404
        await assert_usable(sock)

        frame = await error_frame(sock, json.dumps([1, 2, 3]))
        assert frame["status"] == 400
        await assert_usable(sock)

        frame = await error_frame(sock, b"\x00\x01binary")
        assert frame["status"] == 400
        await assert_usable(sock)

        big = send_body(bob)
        big["ciphertexts"][bob.user_id][0]["body"] = "A" * (LIMIT + 4)
        raw = json.dumps({"id": "x8", "type": "send", "body": big})
        assert LIMIT < len(raw) < 1024 * KIB
        frame = await error_frame(sock, raw)
        assert frame["status"] == 413
        await assert_usable(sock)

        # And a real send still goes through on the same socket.
        reply = await sock.request("send", send_body(bob, "still here"))
        assert reply["status"] == 200, reply
    finally:
        await sock.close()
    bob_sock = await bob.connect()
    (delivery,) = await bob_sock.deliveries(1)
    assert body_text(delivery) == "still here"
    await bob_sock.close()


async def test_websocket_frame_over_1_mib_closes_only_that_socket(gateway: Gateway) -> None:
    alice, bob = await pair(gateway)
    carol = await register(gateway)
    bob_sock = await online(bob)
    sock = await online(alice)
    await sock.ws.send("x" * (1024 * KIB + 10))
    with pytest.raises(websockets.ConnectionClosed):
        await sock.frame("response", timeout=10)
    assert sock.ws.close_code == 1009
    async with carol.http() as http:
        r = await http.post("/v1/messages", json=send_body(bob, "unaffected"))
    assert r.status_code == 200, r.text
    (delivery,) = await bob_sock.deliveries(1)
    assert body_text(delivery) == "unaffected"
    await bob_sock.close()


async def test_garbage_from_one_client_does_not_disturb_another(gateway: Gateway) -> None:
    mallory, alice = await pair(gateway)
    bob = await register(gateway)
    bob_sock = await online(bob)
    alice_sock = await alice.connect()
    mallory_sock = await mallory.connect()
    garbage = [
        "{{{",
        json.dumps({"type": "send"}),
        json.dumps({"id": "g", "type": "nope"}),
        json.dumps({"id": "g", "type": "send", "body": {"to": 1}}),
        "A" * (LIMIT + 10),
    ]

    async def spew() -> int:
        answered = 0
        for i in range(100):
            await mallory_sock.ws.send(garbage[i % len(garbage)])
        while answered < 100:
            frame = await mallory_sock.frame("response")
            assert 400 <= frame["status"] < 500, frame
            answered += 1
        return answered

    spewing = asyncio.create_task(spew())
    try:
        for i in range(5):
            reply = await alice_sock.request("send", send_body(bob, f"msg-{i}", f"m{i}"))
            assert reply["status"] == 200, reply
        got = await bob_sock.deliveries(5)
        assert [body_text(d) for d in got] == [f"msg-{i}" for i in range(5)]
        assert await asyncio.wait_for(spewing, timeout=30) == 100
        await assert_usable(mallory_sock)
    finally:
        spewing.cancel()
        for s in (bob_sock, alice_sock, mallory_sock):
            await s.close()


# property test -------------------------------------------------------------------------
@contextlib.contextmanager
def gateway_in_thread(data_dir: Path) -> Iterator[tuple[Gateway, asyncio.AbstractEventLoop]]:
    """A gateway on its own event loop in a background thread, for sync callers."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        async with run_gateway(data_dir) as gw:
            box.update(gw=gw, loop=asyncio.get_running_loop(), stop=stop)
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    assert ready.wait(30), "gateway did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["gw"], box["loop"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        assert not thread.is_alive()
        if "error" in box:
            raise box["error"]


@pytest.fixture
def fuzz_target(tmp_path: Path) -> Iterator[tuple[httpx.Client, Device, Device]]:
    """One gateway, two registered users and a sync client, shared by every example."""
    with gateway_in_thread(tmp_path / "data") as (gw, loop):
        alice, bob = asyncio.run_coroutine_threadsafe(pair(gw), loop).result(timeout=30)
        with httpx.Client(
            base_url=gw.url, headers={"Authorization": f"Bearer {alice.access_token}"}, timeout=10
        ) as client:
            yield client, alice, bob


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=16,
)


def near_valid(bob: Device) -> st.SearchStrategy[Any]:
    """Objects with the real field names of the send and group bodies, random values."""
    value = JSON_VALUES | st.sampled_from([bob.user_id, "QUJD", "not base64", 1, "m1"])
    entry = st.fixed_dictionaries(
        {}, optional={"device": value, "registration_id": value, "body": value}
    )
    cts = st.dictionaries(
        st.sampled_from([bob.user_id, "ghost"]) | st.text(max_size=8),
        st.lists(entry | value, max_size=3),
        max_size=2,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "id": value,
            "to": st.fixed_dictionaries({}, optional={"user": value, "group": value}) | value,
            "ciphertexts": cts | value,
            "group_body": value,
            "name": value,
            "members": st.lists(value, max_size=3) | value,
        },
    )


def valid_body(path: str, bob: Device, client_id: str) -> dict[str, Any]:
    if path == "/v1/groups":
        return {"name": "fuzz", "members": [bob.user_id]}
    return send_body(bob, "fuzz", client_id)


def mutated(path: str, bob: Device) -> st.SearchStrategy[Any]:
    """A valid body with one value somewhere inside replaced by random JSON, or deleted."""

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        body = valid_body(path, bob, draw(st.text(min_size=1, max_size=8), label="id"))
        # Every (container, key) in the body, nested ones included.
        slots: list[tuple[Any, Any]] = []
        stack: list[Any] = [body]
        while stack:
            node = stack.pop()
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            for key in keys:
                slots.append((node, key))
                if isinstance(node[key], dict | list):
                    stack.append(node[key])
        container, key = draw(st.sampled_from(slots), label="slot")
        if isinstance(container, dict) and draw(st.booleans(), label="delete"):
            del container[key]
        else:
            plausible = st.sampled_from([bob.user_id, "ghost", "QUJD", "!!", 1, 2, 0, 16381, {}])
            container[key] = draw(plausible | JSON_VALUES, label="value")
        return body

    return build()


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_json_bodies_never_cause_a_server_error(
    fuzz_target: tuple[httpx.Client, Device, Device], data: st.DataObject
) -> None:
    """Random JSON (and some raw bytes) to POST /v1/messages and POST /v1/groups is < 500.

    Four kinds of body: arbitrary JSON (``st.recursive``), objects using the real field
    names with random values, a valid body with one nested value replaced or deleted (so
    some requests get past validation into the router), and raw bytes.

    The test is sync on purpose: the gateway runs on its own event loop in a thread
    (``gateway_in_thread``), so hypothesis drives plain blocking requests and one
    gateway serves every example (hence the ``function_scoped_fixture`` suppression).
    ``derandomize`` makes the run repeatable; ``st.data()`` lets the strategies use the
    user ids registered at run time.
    """
    client, _, bob = fuzz_target
    path = data.draw(st.sampled_from(["/v1/messages", "/v1/groups"]), label="path")
    kind = data.draw(st.sampled_from(["json", "near-valid", "mutated", "bytes"]), label="kind")
    if kind == "bytes":
        raw = data.draw(st.binary(max_size=200), label="body")
        r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    else:
        strategy = {
            "json": JSON_VALUES,
            "near-valid": near_valid(bob),
            "mutated": mutated(path, bob),
        }[kind]
        r = client.post(path, json=data.draw(strategy, label="body"))
    event(f"{path} {kind} -> {r.status_code}")
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        error_of(r)
