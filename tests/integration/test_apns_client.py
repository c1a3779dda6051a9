"""The APNs client against a local HTTP/2 APNs that checks what Apple checks."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from providers.apns_server import ApnsApp, RunningApns, Script, run_apns_server
from tidings.core.push import GENERIC_ALERT, Outcome, Provider, PushMessage
from tidings.engines.apns import ApnsSender, build_sender, collapse_id

KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"
TOPIC = "org.tidings.app"
DEVICE = "a" * 64


class FakeClock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _p8() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def key_pem() -> bytes:
    return _p8()


@pytest.fixture
async def apns(tmp_path: Path, key_pem: bytes, clock: FakeClock) -> AsyncIterator[RunningApns]:
    app = ApnsApp(_public_pem(key_pem), KEY_ID, TEAM_ID, TOPIC, clock=clock)
    async with run_apns_server(app, tmp_path) as running:
        yield running


@pytest.fixture
async def sender(apns: RunningApns, key_pem: bytes, clock: FakeClock) -> AsyncIterator[ApnsSender]:
    client = ApnsSender(key_pem, KEY_ID, TEAM_ID, TOPIC, apns.url, str(apns.ca_file), clock)
    yield client
    await client.close()


def _message(token: str = DEVICE, alert: bool = False) -> PushMessage:
    return PushMessage(Provider.APNS, token, collapse_key="u1.2", alert=alert, ttl_s=3600)


async def test_silent_push_is_a_background_push_over_http2(
    apns: RunningApns, sender: ApnsSender, clock: FakeClock
) -> None:
    result = await sender.send(_message())

    assert result.outcome is Outcome.SENT
    [push] = apns.app.accepted
    assert result.detail == push.apns_id
    assert apns.app.requests[0].http_version == "2"
    assert apns.app.requests[0].path == f"/3/device/{DEVICE}"
    assert push.token == DEVICE
    assert push.payload == {"aps": {"content-available": 1}}
    assert push.headers["apns-push-type"] == "background"
    assert push.headers["apns-priority"] == "5"
    assert push.headers["apns-topic"] == TOPIC
    assert push.headers["apns-collapse-id"] == "u1.2"
    assert push.headers["apns-expiration"] == str(int(clock()) + 3600)
    assert push.jwt_header == {"alg": "ES256", "kid": KEY_ID}
    assert push.jwt_claims == {"iss": TEAM_ID, "iat": int(clock())}


async def test_alert_push_carries_only_the_generic_text(
    apns: RunningApns, sender: ApnsSender
) -> None:
    result = await sender.send(_message(alert=True))

    assert result.outcome is Outcome.SENT
    [push] = apns.app.accepted
    assert push.payload == {"aps": {"alert": GENERIC_ALERT}}
    assert push.headers["apns-push-type"] == "alert"
    assert push.headers["apns-priority"] == "10"
    assert apns.app.requests[0].body == b'{"aps":{"alert":"New message"}}'


async def test_long_collapse_keys_are_hashed_to_64_bytes(
    apns: RunningApns, sender: ApnsSender
) -> None:
    key = "k" * 100
    message = PushMessage(Provider.APNS, DEVICE, collapse_key=key)

    assert (await sender.send(message)).outcome is Outcome.SENT
    assert apns.app.accepted[0].headers["apns-collapse-id"] == collapse_id(key)
    assert len(collapse_id(key)) == 64


async def test_the_provider_token_is_reused_then_refreshed_after_50_minutes(
    apns: RunningApns, sender: ApnsSender, clock: FakeClock
) -> None:
    start = int(clock())
    await sender.send(_message())
    clock.advance(49 * 60)
    await sender.send(_message())
    clock.advance(2 * 60)
    await sender.send(_message())

    first, second, third = apns.app.accepted
    assert first.headers["authorization"] == second.headers["authorization"]
    assert third.headers["authorization"] != second.headers["authorization"]
    assert [p.jwt_claims["iat"] for p in apns.app.accepted] == [start, start, start + 51 * 60]


async def test_the_server_rejects_an_hour_old_token(
    apns: RunningApns, key_pem: bytes, clock: FakeClock
) -> None:
    stale = jwt.encode(
        {"iss": TEAM_ID, "iat": int(clock()) - 3601},
        key_pem,
        algorithm="ES256",
        headers={"kid": KEY_ID},
    )
    async with httpx.AsyncClient(http1=False, http2=True, verify=_ssl(apns)) as raw:
        response = await raw.post(
            f"{apns.url}/3/device/{DEVICE}",
            content=b'{"aps":{"content-available":1}}',
            headers={
                "authorization": f"bearer {stale}",
                "apns-topic": TOPIC,
                "apns-push-type": "background",
                "apns-priority": "5",
            },
        )

    assert response.http_version == "HTTP/2"
    assert response.status_code == 403
    assert response.json() == {"reason": "ExpiredProviderToken"}
    assert apns.app.accepted == []


async def test_an_expired_provider_token_is_refreshed_and_the_push_retried_once(
    apns: RunningApns, key_pem: bytes, clock: FakeClock
) -> None:
    # A client that caches its token too long: APNs says it expired, the client
    # mints a new one and retries.
    lax = ApnsSender(
        key_pem, KEY_ID, TEAM_ID, TOPIC, apns.url, str(apns.ca_file), clock, token_max_age=7200
    )
    try:
        assert (await lax.send(_message())).outcome is Outcome.SENT
        clock.advance(3601)
        result = await lax.send(_message())
    finally:
        await lax.close()

    assert result.outcome is Outcome.SENT
    statuses = [(r.status, r.reason) for r in apns.app.requests]
    assert statuses == [(200, ""), (403, "ExpiredProviderToken"), (200, "")]
    old, rejected, fresh = apns.app.requests
    assert rejected.bearer == old.bearer != fresh.bearer
    assert apns.app.accepted[-1].jwt_claims["iat"] == int(clock())


async def test_unregistered_token(apns: RunningApns, sender: ApnsSender) -> None:
    apns.app.scripts[DEVICE] = Script.UNREGISTERED

    result = await sender.send(_message())

    assert result.outcome is Outcome.UNREGISTERED
    assert result.detail == "410 Unregistered"
    assert apns.app.accepted == []


async def test_bad_device_token_is_unregistered_without_a_request(
    apns: RunningApns, sender: ApnsSender
) -> None:
    result = await sender.send(_message(token="../../3/device/zz"))

    assert result.outcome is Outcome.UNREGISTERED
    assert apns.app.requests == []


async def test_throttled_push_is_retried_after_retry_after(
    apns: RunningApns, sender: ApnsSender
) -> None:
    apns.app.scripts[DEVICE] = Script.THROTTLE
    apns.app.retry_after = 30

    result = await sender.send(_message())

    assert result.outcome is Outcome.RETRY
    assert result.retry_after == 30.0
    assert result.detail == "429 TooManyRequests"


async def test_outage_is_retried(apns: RunningApns, sender: ApnsSender) -> None:
    apns.app.scripts[DEVICE] = Script.OUTAGE

    result = await sender.send(_message())

    assert result.outcome is Outcome.RETRY
    assert result.retry_after is None
    assert result.detail == "503 ServiceUnavailable"


async def test_a_token_signed_with_the_wrong_key_is_rejected(
    apns: RunningApns, clock: FakeClock
) -> None:
    impostor = ApnsSender(_p8(), KEY_ID, TEAM_ID, TOPIC, apns.url, str(apns.ca_file), clock)
    try:
        result = await impostor.send(_message())
    finally:
        await impostor.close()

    assert result.outcome is Outcome.REJECTED
    assert result.detail == "403 InvalidProviderToken"
    assert [(r.status, r.reason) for r in apns.app.requests] == [(403, "InvalidProviderToken")]


async def test_a_wrong_topic_is_not_for_this_token(
    apns: RunningApns, key_pem: bytes, clock: FakeClock
) -> None:
    other = ApnsSender(key_pem, KEY_ID, TEAM_ID, "org.other", apns.url, str(apns.ca_file), clock)
    try:
        result = await other.send(_message())
    finally:
        await other.close()

    assert result.outcome is Outcome.UNREGISTERED
    assert result.detail == "400 DeviceTokenNotForTopic"


async def test_unreachable_endpoint_is_retried(key_pem: bytes, clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ApnsSender(key_pem, KEY_ID, TEAM_ID, TOPIC, f"https://127.0.0.1:{port}", clock=clock)
    try:
        result = await client.send(_message())
    finally:
        await client.close()

    assert result.outcome is Outcome.RETRY
    assert result.detail.startswith("network: ConnectError")


async def test_build_sender_reads_the_settings(
    apns: RunningApns, key_pem: bytes, tmp_path: Path
) -> None:
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_bytes(key_pem)
    settings = SimpleNamespace(
        apns_endpoint=apns.url,
        apns_key_file=key_file,
        apns_key_id=KEY_ID,
        apns_team_id=TEAM_ID,
        apns_topic=TOPIC,
        apns_ca_file=apns.ca_file,
    )
    client = build_sender(settings)
    try:
        assert (await client.send(_message())).outcome is Outcome.SENT
    finally:
        await client.close()

    incomplete = SimpleNamespace(**{**vars(settings), "apns_team_id": ""})
    with pytest.raises(ValueError, match="apns_team_id"):
        build_sender(incomplete)
    with pytest.raises(ValueError, match="cannot read the APNs key file"):
        build_sender(SimpleNamespace(**{**vars(settings), "apns_key_file": tmp_path / "none"}))


def test_endpoints_and_keys_are_validated(key_pem: bytes) -> None:
    with pytest.raises(ValueError, match="https"):
        ApnsSender(key_pem, KEY_ID, TEAM_ID, TOPIC, "http://api.push.apple.com")
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="P-256"):
        ApnsSender(p384, KEY_ID, TEAM_ID, TOPIC, "sandbox")


def _ssl(apns: RunningApns) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(apns.ca_file))
