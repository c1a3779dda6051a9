"""The FCM HTTP v1 client against a local FCM + OAuth2 server over verified TLS.

Every assertion looks at what the server recorded: the grants it verified, the
messages it accepted and the attempts it refused.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from providers.fcm_server import FakeFcm, ManualClock, run_fcm_server
from providers.tls import TlsFiles, make_tls
from tidings.config import Settings
from tidings.core.push import GENERIC_ALERT, Outcome, Provider, PushMessage
from tidings.engines.fcm import FcmSender, build_sender, parse_retry_after
from tidings.engines.fcm_auth import FCM_SCOPE, CredentialsError


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("fcm-tls"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fcm(tls: TlsFiles, clock: ManualClock) -> AsyncIterator[FakeFcm]:
    async with run_fcm_server(tls, FakeFcm(clock=clock)) as fake:
        yield fake


@pytest.fixture
async def sender(fcm: FakeFcm, clock: ManualClock) -> AsyncIterator[FcmSender]:
    client = FcmSender(fcm.new_account(), fcm.url, verify=str(fcm.ca_file), clock=clock)
    yield client
    await client.close()


def push(token: str = "device-token-1", *, alert: bool = False, ttl: int = 600) -> PushMessage:
    return PushMessage(Provider.FCM, token, collapse_key="u1.2", alert=alert, ttl_s=ttl)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_silent_push_is_a_wake_data_message_with_no_content(
    sender: FcmSender, fcm: FakeFcm
) -> None:
    result = await sender.send(push())

    assert result.outcome is Outcome.SENT
    [accepted] = fcm.accepted
    assert result.detail == accepted.name
    assert accepted.message == {
        "token": "device-token-1",
        "data": {"type": "wake"},
        "android": {"priority": "high", "collapse_key": "u1.2", "ttl": "600s"},
    }


async def test_alert_push_carries_only_the_generic_text(sender: FcmSender, fcm: FakeFcm) -> None:
    result = await sender.send(push(alert=True))

    assert result.outcome is Outcome.SENT
    [accepted] = fcm.accepted
    assert accepted.message["notification"] == {"body": GENERIC_ALERT}
    assert accepted.message["data"] == {"type": "wake"}
    assert accepted.message["android"]["collapse_key"] == "u1.2"
    assert accepted.message["android"]["notification"] == {"tag": "u1.2"}


async def test_access_token_is_fetched_once_and_cached(sender: FcmSender, fcm: FakeFcm) -> None:
    results = await asyncio.gather(*(sender.send(push(f"device-{i}")) for i in range(5)))
    results.append(await sender.send(push("device-5")))

    assert all(r.outcome is Outcome.SENT for r in results)
    [grant] = fcm.grants
    assert grant["scope"] == FCM_SCOPE
    assert grant["aud"] == fcm.token_uri
    assert grant["iss"] == sender.account.client_email
    assert grant["exp"] - grant["iat"] == 3600
    assert len({a.access_token for a in fcm.accepted}) == 1
    assert len(fcm.accepted) == 6


async def test_access_token_is_refreshed_before_it_expires(
    sender: FcmSender, fcm: FakeFcm, clock: ManualClock
) -> None:
    assert (await sender.send(push())).outcome is Outcome.SENT
    clock.advance(fcm.token_lifetime - 120)
    assert (await sender.send(push())).outcome is Outcome.SENT
    assert len(fcm.grants) == 1

    clock.advance(90)  # within the refresh margin of expiry
    assert (await sender.send(push())).outcome is Outcome.SENT

    assert len(fcm.grants) == 2
    first, second, third = (a.access_token for a in fcm.accepted)
    assert first == second != third
    assert fcm.unauthenticated == 0


async def test_revoked_token_is_refreshed_once_and_the_push_retried(
    sender: FcmSender, fcm: FakeFcm
) -> None:
    assert (await sender.send(push())).outcome is Outcome.SENT
    fcm.revoke_access_tokens()

    result = await sender.send(push())

    assert result.outcome is Outcome.SENT
    assert fcm.unauthenticated == 1
    assert len(fcm.grants) == 2
    assert len(fcm.accepted) == 2


async def test_unregistered_token_is_reported_dead(sender: FcmSender, fcm: FakeFcm) -> None:
    fcm.token_errors["stale-token"] = "UNREGISTERED"

    result = await sender.send(push("stale-token"))

    assert result.outcome is Outcome.UNREGISTERED
    assert "UNREGISTERED" in result.detail
    assert fcm.attempts == ["stale-token"]
    assert fcm.accepted == []


async def test_invalid_token_argument_is_reported_dead(sender: FcmSender, fcm: FakeFcm) -> None:
    fcm.token_errors["garbled"] = "INVALID_ARGUMENT"

    result = await sender.send(push("garbled"))

    assert result.outcome is Outcome.UNREGISTERED
    assert fcm.attempts == ["garbled"]


async def test_sender_id_mismatch_is_rejected(sender: FcmSender, fcm: FakeFcm) -> None:
    fcm.token_errors["other-app"] = "SENDER_ID_MISMATCH"

    result = await sender.send(push("other-app"))

    assert result.outcome is Outcome.REJECTED
    assert "SENDER_ID_MISMATCH" in result.detail


async def test_throttling_asks_for_retry_after_seconds(sender: FcmSender, fcm: FakeFcm) -> None:
    fcm.mode, fcm.retry_after = "QUOTA_EXCEEDED", "17"

    result = await sender.send(push())

    assert result.outcome is Outcome.RETRY
    assert result.retry_after == 17.0
    assert "429" in result.detail
    assert fcm.attempts == ["device-token-1"]
    assert fcm.accepted == []


async def test_retry_after_may_be_an_http_date(
    sender: FcmSender, fcm: FakeFcm, clock: ManualClock
) -> None:
    when = datetime.fromtimestamp(int(clock()), UTC) + timedelta(seconds=42)
    fcm.mode, fcm.retry_after = "QUOTA_EXCEEDED", format_datetime(when, usegmt=True)

    result = await sender.send(push())

    assert result.outcome is Outcome.RETRY
    assert result.retry_after == pytest.approx(42.0, abs=1.0)


@pytest.mark.parametrize("mode", ["UNAVAILABLE", "INTERNAL"])
async def test_provider_outage_asks_for_retry(sender: FcmSender, fcm: FakeFcm, mode: str) -> None:
    fcm.mode = mode

    result = await sender.send(push())

    assert result.outcome is Outcome.RETRY
    assert result.retry_after is None
    assert fcm.attempts == ["device-token-1"]

    fcm.mode = None
    assert (await sender.send(push())).outcome is Outcome.SENT
    assert len(fcm.accepted) == 1


async def test_credentials_with_the_wrong_key_are_rejected(
    fcm: FakeFcm, clock: ManualClock
) -> None:
    genuine = fcm.new_account()
    other = fcm.new_account()  # a valid key, but not the one registered for `genuine`
    forged = {**genuine, "private_key": other["private_key"]}
    client = FcmSender(forged, fcm.url, verify=str(fcm.ca_file), clock=clock)
    try:
        result = await client.send(push())
    finally:
        await client.close()

    assert result.outcome is Outcome.REJECTED
    assert fcm.refused_grants == ["Invalid JWT Signature."]
    assert fcm.grants == []
    assert fcm.attempts == []


async def test_unreachable_token_endpoint_asks_for_retry(fcm: FakeFcm, clock: ManualClock) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    client = FcmSender(
        fcm.new_account(), fcm.url, f"{dead}/token", verify=str(fcm.ca_file), clock=clock
    )
    try:
        result = await client.send(push())
    finally:
        await client.close()

    assert result.outcome is Outcome.RETRY
    assert fcm.grants == []
    assert fcm.attempts == []


async def test_unreachable_fcm_endpoint_asks_for_retry(fcm: FakeFcm, clock: ManualClock) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    client = FcmSender(fcm.new_account(), dead, verify=str(fcm.ca_file), clock=clock)
    try:
        result = await client.send(push())
    finally:
        await client.close()

    assert result.outcome is Outcome.RETRY
    assert "network error" in result.detail
    assert len(fcm.grants) == 1  # the token came from the live server
    assert fcm.attempts == []


async def test_tls_is_verified_by_default(fcm: FakeFcm, clock: ManualClock) -> None:
    client = FcmSender(fcm.new_account(), fcm.url, clock=clock)
    try:
        result = await client.send(push())
    finally:
        await client.close()

    assert result.outcome is Outcome.RETRY
    assert fcm.grants == []
    assert fcm.attempts == []


async def test_build_sender_reads_settings(fcm: FakeFcm, tmp_path: Path) -> None:
    credentials = tmp_path / "service-account.json"
    credentials.write_text(json.dumps(fcm.new_account()))
    settings = Settings(
        data_dir=tmp_path / "data",
        fcm_endpoint=fcm.url,
        fcm_token_uri=fcm.token_uri,
        fcm_credentials_file=credentials,
        fcm_ca_file=fcm.ca_file,
    )
    client = build_sender(settings)
    try:
        result = await client.send(push())
    finally:
        await client.close()

    assert result.outcome is Outcome.SENT
    assert len(fcm.accepted) == 1


def test_build_sender_explains_missing_settings(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="fcm_credentials_file"):
        build_sender(SimpleNamespace(fcm_endpoint="", fcm_token_uri=None))
    with pytest.raises(CredentialsError, match="is not set"):
        build_sender(SimpleNamespace(fcm_endpoint="", fcm_token_uri=None, fcm_credentials_file=""))
    missing = tmp_path / "nope.json"
    with pytest.raises(CredentialsError, match="cannot read"):
        build_sender(
            SimpleNamespace(fcm_endpoint="", fcm_token_uri=None, fcm_credentials_file=missing)
        )
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"client_email": "x@y", "project_id": "p"}))
    with pytest.raises(CredentialsError, match="private_key"):
        build_sender(
            SimpleNamespace(fcm_endpoint="", fcm_token_uri=None, fcm_credentials_file=broken)
        )


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, 0.0) is None
    assert parse_retry_after("5", 0.0) == 5.0
    assert parse_retry_after("garbage", 0.0) is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0
