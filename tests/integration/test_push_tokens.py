"""PUT/DELETE /v1/devices/{id}/push and the provider in GET /v1/devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import Gateway, register
from push_support import push_providers, set_token
from tidings.bootstrap import create_apps
from tidings.config import Settings, up_components
from tidings.core.model import PushToken
from tidings.core.push import Provider

FCM = "dGVzdA:APA91b" + "x" * 150
APNS = "0123456789abcdef" * 4


async def test_set_replace_and_remove_own_token(gateway: Gateway) -> None:
    alice = await register(gateway)
    assert await push_providers(alice) == {1: None}
    await set_token(alice, FCM)
    assert await push_providers(alice) == {1: "fcm"}
    async with alice.http() as http:
        r = await http.get("/v1/devices")
    assert FCM not in r.text  # the provider shows, never the token
    await set_token(alice, APNS, provider="apns", alert=True)
    assert await push_providers(alice) == {1: "apns"}
    async with alice.http() as http:
        for _ in range(2):  # idempotent
            r = await http.delete("/v1/devices/1/push")
            assert r.status_code == 204, r.text
    assert await push_providers(alice) == {1: None}


async def test_a_token_moves_to_the_device_that_registers_it(gateway: Gateway) -> None:
    alice = await register(gateway)
    laptop = await alice.link()
    bob = await register(gateway)
    await set_token(alice, APNS, provider="apns")
    await set_token(laptop, APNS, provider="apns")
    assert await push_providers(alice) == {1: None, 2: "apns"}
    await set_token(bob, APNS, provider="apns")  # across accounts too
    assert await push_providers(alice) == {1: None, 2: None}
    assert await push_providers(bob) == {1: "apns"}
    # The same string under another provider is another token.
    await set_token(alice, "ab" * 40)
    await set_token(laptop, "ab" * 40, provider="apns")
    assert await push_providers(alice) == {1: "fcm", 2: "apns"}


async def test_no_device_sets_or_removes_another_devices_token(gateway: Gateway) -> None:
    alice = await register(gateway)
    laptop = await alice.link()
    await set_token(laptop, FCM)
    body = {"provider": "fcm", "token": FCM + "2"}
    async with alice.http() as http:  # not even the primary
        assert (await http.put("/v1/devices/2/push", json=body)).status_code == 403
        assert (await http.delete("/v1/devices/2/push")).status_code == 403
    async with laptop.http() as http:
        assert (await http.put("/v1/devices/1/push", json=body)).status_code == 403
        assert (await http.put("/v1/devices/7/push", json=body)).status_code == 403
    async with gateway.http() as http:
        assert (await http.put("/v1/devices/1/push", json=body)).status_code == 401
    assert await push_providers(alice) == {1: None, 2: "fcm"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"provider": "gcm", "token": FCM}, 422),
        ({"provider": "fcm"}, 422),
        ({"provider": "fcm", "token": ""}, 422),
        ({"provider": "fcm", "token": "x" * 4097}, 422),
        ({"provider": "fcm", "token": "has space"}, 422),
        ({"provider": "fcm", "token": FCM, "alert": "yes"}, 422),
        ({"provider": "fcm", "token": FCM, "user": "someone"}, 422),
        ({"provider": "apns", "token": "xyz" * 30}, 422),
        ({"provider": "apns", "token": "ab" * 20}, 422),
        ({"provider": "apns", "token": "a" * 65}, 422),
        ({"provider": "apns", "token": "ab" * 101}, 422),
        ({"provider": "fcm", "token": 12345}, 422),
        ("not an object", 422),
    ],
)
async def test_bad_token_bodies_are_refused(gateway: Gateway, body: Any, status: int) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        r = await http.put("/v1/devices/1/push", json=body)
    assert r.status_code == status, r.text
    assert "error" in r.json()
    assert await push_providers(alice) == {1: None}


async def test_invalid_json_is_a_400(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        r = await http.put(
            "/v1/devices/1/push", content=b"{", headers={"content-type": "application/json"}
        )
    assert r.status_code == 400, r.text


async def test_unlinking_or_reinstalling_drops_the_token(gateway: Gateway) -> None:
    assert gateway.running is not None
    users = gateway.running.server.config.app.state.platform.services.ctx.users
    alice = await register(gateway)
    laptop = await alice.link()
    await set_token(alice, FCM)
    await set_token(laptop, APNS, provider="apns")
    async with alice.http() as http:
        assert (await http.delete("/v1/devices/2")).status_code == 204
    assert await users.get_push_token(alice.user_id, 2) is None
    token: PushToken = await users.get_push_token(alice.user_id, 1)
    assert (token.provider, token.token) == (Provider.FCM, FCM)
    await register(gateway, alice.phone)  # a reinstall is a new app instance
    assert await users.get_push_token(alice.user_id, 1) is None


def test_push_runs_in_up_only_with_a_provider(tmp_path: Path) -> None:
    assert "push" not in up_components(Settings(data_dir=tmp_path))
    settings = Settings(data_dir=tmp_path, push_providers=" APNS, fcm,apns ")
    assert settings.push_provider_list == [Provider.APNS, Provider.FCM]
    assert "push" in up_components(settings)
    with pytest.raises(ValueError, match="unknown push providers"):
        Settings(push_providers="fcm,webpush")
    with pytest.raises(SystemExit, match="TIDINGS_PUSH_PROVIDERS"):
        create_apps(Settings(data_dir=tmp_path), components=("push",))
