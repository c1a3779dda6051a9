"""The whole push path on the wire: offline device -> delivery -> push worker -> the
real FCM client -> a local FCM + OAuth2 server that checks the documented protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import procs
from harness import Gateway, register, run_gateway
from providers.fcm_server import FakeFcm, run_fcm_server
from providers.tls import TlsFiles, make_tls
from push_support import send_many, set_token, until, until_token_removed
from servers import ENGINE_SETS, as_settings, unique_region


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("fcm-tls"))


@pytest.fixture
async def fcm(tls: TlsFiles) -> AsyncIterator[FakeFcm]:
    async with run_fcm_server(tls) as fake:
        yield fake


def fcm_env(fcm: FakeFcm, tmp_path: Path) -> dict[str, str]:
    """``TIDINGS_*`` settings that push through the local FCM server, with a fresh
    service account written next to the test's data."""
    credentials = tmp_path / "service-account.json"
    credentials.write_text(json.dumps(fcm.new_account()))
    return {
        "TIDINGS_PUSH_PROVIDERS": "fcm",
        "TIDINGS_FCM_ENDPOINT": fcm.url,
        "TIDINGS_FCM_TOKEN_URI": fcm.token_uri,
        "TIDINGS_FCM_CREDENTIALS_FILE": str(credentials),
        "TIDINGS_FCM_CA_FILE": str(fcm.ca_file),
        "TIDINGS_PUSH_BACKOFF_BASE_S": "0.05",
    }


@pytest.fixture(params=ENGINE_SETS)
async def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, fcm: FakeFcm
) -> AsyncIterator[Gateway]:
    """Every component in one process, pushing through the real FCM client, on each
    engine set."""
    settings = as_settings(fcm_env(fcm, tmp_path))
    if request.param == "distributed":
        settings |= as_settings(request.getfixturevalue("distributed_env"))
        settings["region"] = unique_region()
    async with run_gateway(tmp_path / "data", **settings, push_collapse_s=1.0) as gw:
        yield gw


def _pushes_to(fcm: FakeFcm, token: str) -> list[dict[str, object]]:
    return [a.message for a in fcm.accepted if a.message.get("token") == token]


async def test_a_burst_to_an_offline_device_gives_one_content_free_fcm_push(
    gateway: Gateway, fcm: FakeFcm
) -> None:
    alice, bob = await register(gateway), await register(gateway)
    await set_token(bob, "bob-fcm-token")
    await send_many(alice, bob, 5, "meet at the old mill")
    await until(lambda: len(_pushes_to(fcm, "bob-fcm-token")) >= 1)
    await asyncio.sleep(0.5)  # inside the collapse window: no second push may follow
    (message,) = _pushes_to(fcm, "bob-fcm-token")
    assert message["data"] == {"type": "wake"}
    wire = json.dumps(message)
    for leak in ("old mill", alice.user_id, alice.phone, bob.user_id):
        assert leak not in wire
    assert len(fcm.grants) == 1  # one OAuth2 token for the pool


async def test_an_unregistered_token_is_removed_and_never_tried_again(
    gateway: Gateway, fcm: FakeFcm
) -> None:
    alice, carol = await register(gateway), await register(gateway)
    fcm.token_errors["carol-token"] = "UNREGISTERED"
    await set_token(carol, "carol-token")
    await send_many(alice, carol, 1, "first")
    await until(lambda: fcm.attempts.count("carol-token") == 1)

    await until_token_removed(carol)
    await asyncio.sleep(1.1)  # past the collapse window
    await send_many(alice, carol, 2, "second")
    await asyncio.sleep(1.0)
    assert fcm.attempts.count("carol-token") == 1


async def test_a_provider_outage_is_retried_and_pushes_once_after_recovery(
    gateway: Gateway, fcm: FakeFcm
) -> None:
    alice, dave = await register(gateway), await register(gateway)
    fcm.mode, fcm.retry_after = "UNAVAILABLE", "0"
    await set_token(dave, "dave-token")
    await send_many(alice, dave, 1, "during the outage")
    await until(lambda: fcm.attempts.count("dave-token") >= 2)
    assert _pushes_to(fcm, "dave-token") == []
    fcm.mode = None
    await until(lambda: len(_pushes_to(fcm, "dave-token")) == 1)
    await asyncio.sleep(1.0)
    assert len(_pushes_to(fcm, "dave-token")) == 1


async def test_a_sigkilled_push_worker_leaves_its_job_to_the_next_worker(
    tmp_path: Path, fcm: FakeFcm
) -> None:
    """The gateway and delivery run here; the push worker is a separate ``tidings serve
    push`` process on the same data directory, killed while FCM is failing."""
    env = fcm_env(fcm, tmp_path)
    data, log = tmp_path / "data", tmp_path / "push.log"
    async with run_gateway(data, components=("gateway", "delivery")) as gw:
        alice, erin = await register(gw), await register(gw)
        await set_token(erin, "erin-token")
        fcm.mode, fcm.retry_after = "UNAVAILABLE", "0"
        first = await procs.start(["serve", "push"], data, log, env)
        try:
            await send_many(alice, erin, 1, "while the worker dies")
            await until(lambda: fcm.attempts.count("erin-token") >= 1)
        finally:
            first.kill()
            await first.wait()
        assert _pushes_to(fcm, "erin-token") == []
        fcm.mode = None
        async with procs.running(["serve", "push"], data, log, env):
            await until(lambda: len(_pushes_to(fcm, "erin-token")) == 1, timeout=20)
            await asyncio.sleep(1.0)
        assert len(_pushes_to(fcm, "erin-token")) == 1


async def test_a_pool_of_push_worker_processes_on_kafka_pushes_once_per_device_and_survives_a_kill(
    tmp_path: Path, fcm: FakeFcm, distributed_env: dict[str, str]
) -> None:
    """Two ``tidings serve push`` processes share the push topic's partitions (one Kafka
    consumer group) and the collapse windows and rate bucket (Redis). A burst to many
    offline devices gives one push each; killing one worker during an FCM outage leaves
    its jobs to the other, which pushes each once after recovery."""
    env = {
        **distributed_env,
        **fcm_env(fcm, tmp_path),
        "TIDINGS_REGION": unique_region(),
        "TIDINGS_PUSH_COLLAPSE_S": "30",
        # The outage below lasts until every late device has seen an attempt (up to
        # 30 s): fifty retries a second apart outlast it. With the default five and
        # Retry-After 0, a job could be dropped as exhausted before the recovery.
        "TIDINGS_PUSH_MAX_ATTEMPTS": "50",
    }
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    async with (
        procs.running(["serve", "gateway"], data, log, env) as api,
        procs.running(["serve", "delivery"], data, log, env),
        procs.running(["serve", "push"], data, log, env),
    ):
        gw = api.gateway(data)
        second = await procs.start(["serve", "push"], data, log, env)
        try:
            alice = await register(gw)
            sleepers = [await register(gw) for _ in range(6)]
            for n, device in enumerate(sleepers):
                await set_token(device, f"sleeper-{n}")
            for n, device in enumerate(sleepers):  # message ids are unique per sender
                await send_many(alice, device, 3, f"wake-{n}")
            await until(lambda: all(_pushes_to(fcm, f"sleeper-{n}") for n in range(6)), timeout=30)
            await asyncio.sleep(1.0)
            assert [len(_pushes_to(fcm, f"sleeper-{n}")) for n in range(6)] == [1] * 6

            late = [await register(gw) for _ in range(4)]
            for n, device in enumerate(late):
                await set_token(device, f"late-{n}")
            fcm.mode, fcm.retry_after = "UNAVAILABLE", "1"
            for n, device in enumerate(late):
                await send_many(alice, device, 1, f"outage-{n}")
            await until(lambda: all(f"late-{n}" in fcm.attempts for n in range(4)), timeout=30)
        finally:
            second.kill()
            await second.wait()
        fcm.mode = None
        await until(lambda: all(_pushes_to(fcm, f"late-{n}") for n in range(4)), timeout=60)
        await asyncio.sleep(1.0)
    assert [len(_pushes_to(fcm, f"late-{n}")) for n in range(4)] == [1] * 4
