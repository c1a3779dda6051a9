"""Limits that hold against many accounts and many numbers, on each engine set (the
in-memory and the Redis rate limiter): code requests and registrations per client
address and per block of numbers, bundle fetches per pair of accounts, discovery per
account per day.

Each gateway runs on a clock the test moves (``limits_support.FakeClock``): buckets
refill only when it says so, never with wall-clock time.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from harness import new_phone, register
from limits_support import clocked, refusal


def block_phone(block: str, n: int) -> str:
    """The ``n``-th number of a block of 10,000 (``block`` is ``+`` and 7 digits)."""
    return f"{block}{n:04d}"


async def test_code_requests_are_limited_per_client_address(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    async with clocked(tmp_path, engine_settings) as (gw, clock), gw.http() as http:
        for _ in range(20):  # the burst, each to another number
            r = await http.post("/v1/auth/code", json={"phone": new_phone()})
            assert r.status_code == 202, r.text
        # Claiming another address does not help: no proxy is trusted.
        r = await http.post(
            "/v1/auth/code",
            json={"phone": new_phone()},
            headers={"X-Forwarded-For": "198.51.100.77"},
        )
        retry_after = refusal(r)
        assert 59 <= retry_after <= 60  # one request a minute
        clock.advance(retry_after)
        r = await http.post("/v1/auth/code", json={"phone": new_phone()})
        assert r.status_code == 202, r.text
        r = await http.post("/v1/auth/code", json={"phone": new_phone()})
        refusal(r)


async def test_registrations_are_limited_per_client_address(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    async with clocked(tmp_path, engine_settings) as (gw, clock):
        alice = await register(gw)  # a code request and a registration of the burst
        async with gw.http() as http:
            body = {"phone": alice.phone, "code": "000000", "registration_id": 1}
            for _ in range(19):  # the rest of the burst: wrong codes, or none asked
                r = await http.post("/v1/auth/register", json={**body, "phone": new_phone()})
                assert r.status_code == 401, r.text
            phone = new_phone()
            r = await http.post("/v1/auth/code", json={"phone": phone})
            assert r.status_code == 202, r.text
            right = {**body, "phone": phone, "code": gw.code_for(phone)}
            retry_after = refusal(await http.post("/v1/auth/register", json=right))
            clock.advance(retry_after)
            r = await http.post("/v1/auth/register", json=right)  # the code is still good
            assert r.status_code == 200, r.text


async def test_behind_a_trusted_proxy_each_client_address_has_its_own_bucket(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    async with (
        clocked(tmp_path, engine_settings, trusted_proxies="127.0.0.1") as (gw, _),
        gw.http() as http,
    ):
        for _ in range(20):
            r = await http.post(
                "/v1/auth/code",
                json={"phone": new_phone()},
                headers={"X-Forwarded-For": "192.0.2.1"},
            )
            assert r.status_code == 202, r.text
        crafted = {"X-Forwarded-For": "198.51.100.9, 192.0.2.1"}  # the client wrote the first
        refusal(await http.post("/v1/auth/code", json={"phone": new_phone()}, headers=crafted))
        r = await http.post(
            "/v1/auth/code",
            json={"phone": new_phone()},
            headers={"X-Forwarded-For": "192.0.2.2"},
        )
        assert r.status_code == 202, r.text


async def test_code_requests_are_limited_per_block_of_numbers_from_every_address(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    async with (
        clocked(tmp_path, engine_settings, trusted_proxies="127.0.0.1") as (gw, clock),
        gw.http() as http,
    ):

        async def ask(phone: str, n: int) -> httpx.Response:
            headers = {"X-Forwarded-For": f"192.0.2.{n}"}  # another client each time
            return await http.post("/v1/auth/code", json={"phone": phone}, headers=headers)

        block = "+1999555"
        for n in range(30):  # the burst of the block +199955 (six digits)
            r = await ask(block_phone(block, n), n)
            assert r.status_code == 202, r.text
        retry_after = refusal(await ask(block_phone("+1999556", 1), 100))  # same six digits
        assert 1 <= retry_after <= 2  # one request every two seconds
        r = await ask(block_phone("+1999565", 1), 101)  # another block
        assert r.status_code == 202, r.text
        clock.advance(retry_after)
        r = await ask(block_phone(block, 99), 102)
        assert r.status_code == 202, r.text


async def test_one_account_cannot_use_up_anothers_one_time_prekeys(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    async with clocked(tmp_path, engine_settings) as (gw, clock):
        mallory, bob, carol = await register(gw), await register(gw), await register(gw)
        await bob.publish_keys(one_time=29)
        async with mallory.http() as http:
            answers = [await http.get(f"/v1/keys/{bob.user_id}") for _ in range(40)]
            assert [r.status_code for r in answers] == [200] * 10 + [429] * 30
            retry_after = refusal(answers[-1])
            assert retry_after <= 360
        async with bob.http() as http:
            assert (await http.get("/v1/keys/count")).json() == {"count": 19}
        async with carol.http() as http:  # another account has a bucket of its own
            r = await http.get(f"/v1/keys/{bob.user_id}")
            assert r.status_code == 200, r.text
            assert r.json()["devices"][0]["one_time_prekey"] is not None
        clock.advance(retry_after)
        async with mallory.http() as http:
            assert (await http.get(f"/v1/keys/{bob.user_id}")).status_code == 200
            refusal(await http.get(f"/v1/keys/{bob.user_id}"))


async def test_discovery_is_limited_per_account_per_day_and_counted(
    tmp_path: Path, engine_settings: dict[str, str]
) -> None:
    async with clocked(tmp_path, engine_settings) as (gw, clock):
        alice, bob = await register(gw), await register(gw)
        blocks = [f"+1888{n:03d}" for n in range(10)]
        async with alice.http() as http:
            for block in blocks:  # 10 x 500 numbers: the day's 5,000
                phones = [block_phone(block, n) for n in range(499)] + [bob.phone]
                r = await http.post("/v1/directory/lookup", json={"phones": phones})
                assert r.status_code == 200, r.text
                assert r.json() == {"users": {bob.phone: bob.user_id}}
            retry_after = refusal(
                await http.post("/v1/directory/lookup", json={"phones": [bob.phone]})
            )
            assert 17 <= retry_after <= 18  # a number every 17.28 s
            clock.advance(100 * 86_400 / 5000)  # a hundred numbers' worth
            phones = [block_phone("+1777000", n) for n in range(100)]
            r = await http.post("/v1/directory/lookup", json={"phones": phones})
            assert r.status_code == 200, r.text
            refusal(await http.post("/v1/directory/lookup", json={"phones": [bob.phone]}))
        async with bob.http() as http:  # every account has its own day
            r = await http.post("/v1/directory/lookup", json={"phones": [alice.phone]})
            assert r.status_code == 200, r.text
        async with gw.ops_http() as http:
            metrics = (await http.get("/metrics")).text
        assert 'tidings_discovery_numbers_total{result="registered"} 11.0' in metrics
        assert 'tidings_discovery_numbers_total{result="unregistered"} 5090.0' in metrics
        assert 'tidings_rate_limited_total{limit="discovery-daily"} 2.0' in metrics
