"""UserStore contract: uniqueness, devices, keys claimed once, contacts, groups."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from contract_support import sqlite_or_cassandra
from tidings.core.model import (
    PRIMARY_DEVICE,
    AuthSession,
    Device,
    Group,
    OneTimePreKey,
    PresencePrivacy,
    PushToken,
    Role,
    SignedPreKey,
    User,
)
from tidings.core.push import Provider
from tidings.engines.embedded.userstore import SqliteUserStore
from tidings.errors import LimitExceeded
from tidings.ports import UserStore

# --------------------------------------------------------------------------- fixture


@pytest.fixture(params=["embedded", "cassandra"])
async def users(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    async with sqlite_or_cassandra(
        request,
        lambda: SqliteUserStore.at(tmp_path / "users.db"),
        lambda engine: engine.users,
    ) as found:
        yield found


@pytest.fixture
def ids() -> Callable[[str], str]:
    """Per-test names for users, phones, groups and tokens: the Cassandra keyspace is
    shared, so every test writes under its own prefix (the embedded engine too, so the
    assertions are the same for both)."""
    tag = uuid.uuid4().hex[:12]
    return lambda name: f"{tag}-{name}"


# --------------------------------------------------------------------------- user store

Ids = Callable[[str], str]


def user(uid: str, phone: str) -> User:
    return User(uid, phone, created_at=1.0, display_name=uid)


def device(uid: str, device_id: int = 0, registration_id: int = 7) -> Device:
    return Device(uid, device_id, f"{uid}-phone", registration_id, created_at=2.0)


async def test_users_phone_is_unique(users: UserStore, ids: Ids) -> None:
    phone1, phone2 = ids("+14155550001"), ids("+14155550002")
    alice = user(ids("alice"), phone1)
    assert await users.create_user(alice) == (alice, True)
    impostor = user(ids("impostor"), phone1)
    assert await users.create_user(impostor) == (alice, False)
    assert await users.create_user(alice) == (alice, False)
    assert await users.get_user(ids("impostor")) is None
    assert await users.get_user(ids("alice")) == alice
    bob = user(ids("bob"), phone2)
    assert (await users.create_user(bob))[1]
    assert await users.users_by_phone([phone1, phone2, ids("+19999999999")]) == {
        phone1: alice,
        phone2: bob,
    }
    assert await users.users_by_phone([]) == {}


async def test_users_push_token_moves_and_conditional_remove(users: UserStore, ids: Ids) -> None:
    alice, bob, tok = ids("alice"), ids("bob"), ids("tok")
    fcm, apns = PushToken(Provider.FCM, tok, True, 3.0), PushToken(Provider.APNS, tok)
    await users.set_push_token(alice, 1, fcm)
    await users.set_push_token(alice, 2, apns)  # same string, other provider: both kept
    assert await users.push_tokens_of(alice) == {1: fcm, 2: apns}
    await users.set_push_token(bob, 1, fcm)  # moves off alice's device 1
    assert await users.get_push_token(alice, 1) is None
    assert await users.get_push_token(bob, 1) == fcm
    assert await users.push_tokens_of(alice) == {2: apns}
    assert not await users.remove_push_token(bob, 1, ids("other"))  # no longer that token
    assert await users.remove_push_token(bob, 1, tok)
    assert not await users.remove_push_token(bob, 1)
    assert await users.push_tokens_of(bob) == {}


async def test_users_push_token_replaced_on_same_device(users: UserStore, ids: Ids) -> None:
    alice, bob = ids("alice"), ids("bob")
    old, new = PushToken(Provider.FCM, ids("old")), PushToken(Provider.FCM, ids("new"), True, 4.0)
    await users.set_push_token(alice, 1, old)
    await users.set_push_token(alice, 1, new)
    assert await users.get_push_token(alice, 1) == new
    await users.set_push_token(bob, 1, old)  # the replaced token is free for anyone
    assert await users.push_tokens_of(alice) == {1: new}
    assert await users.push_tokens_of(bob) == {1: old}


async def test_users_concurrent_create_same_phone_creates_once(users: UserStore, ids: Ids) -> None:
    results = await asyncio.gather(
        *(users.create_user(user(ids(f"u{i}"), ids("+14155550009"))) for i in range(10))
    )
    assert sum(created for _, created in results) == 1
    assert len({u.id for u, _ in results}) == 1
    (winner,) = {u.id for u, _ in results}
    losers = [ids(f"u{i}") for i in range(10) if ids(f"u{i}") != winner]
    assert [await users.get_user(uid) for uid in losers] == [None] * 9


async def test_users_add_device_assigns_increasing_ids_and_enforces_max(
    users: UserStore, ids: Ids
) -> None:
    alice = ids("alice")
    await users.create_user(user(alice, ids("+14155550003")))
    await users.put_primary_device(device(alice, PRIMARY_DEVICE))
    second = await users.add_device(device(alice, registration_id=22), max_devices=3)
    third = await users.add_device(device(alice, registration_id=33), max_devices=3)
    assert (second.device_id, third.device_id) == (2, 3)
    assert (second.registration_id, third.registration_id) == (22, 33)
    with pytest.raises(LimitExceeded):
        await users.add_device(device(alice), max_devices=3)
    assert [d.device_id for d in await users.list_devices(alice)] == [1, 2, 3]

    assert await users.remove_device(alice, 3)
    assert not await users.remove_device(alice, 3)
    fourth = await users.add_device(device(alice), max_devices=3)
    assert fourth.device_id == 4  # ids are never reused
    assert [d.device_id for d in await users.list_devices(alice)] == [1, 2, 4]
    assert await users.devices_of([ids("nobody"), alice]) == await users.list_devices(alice)


async def test_users_concurrent_add_device_respects_max(users: UserStore, ids: Ids) -> None:
    alice = ids("alice")
    await users.create_user(user(alice, ids("+14155550004")))
    await users.put_primary_device(device(alice, PRIMARY_DEVICE))
    results = await asyncio.gather(
        *(users.add_device(device(alice), max_devices=4) for _ in range(8)),
        return_exceptions=True,
    )
    added = [r for r in results if isinstance(r, Device)]
    assert sorted(d.device_id for d in added) == [2, 3, 4]
    assert all(isinstance(r, LimitExceeded) for r in results if not isinstance(r, Device))


async def test_users_claim_one_time_prekey_never_twice(users: UserStore, ids: Ids) -> None:
    bob = ids("bob")
    keys = [OneTimePreKey(i, bytes([i]) * 32) for i in range(1, 21)]
    assert await users.add_one_time_prekeys(bob, 1, keys, max_stored=100) == 20
    claims = await asyncio.gather(*(users.claim_one_time_prekey(bob, 1) for _ in range(50)))
    claimed = [c for c in claims if c is not None]
    assert len(claimed) == 20
    assert sorted(c.key_id for c in claimed) == list(range(1, 21))
    assert set(claimed) == set(keys)
    assert await users.count_one_time_prekeys(bob, 1) == 0
    assert await users.claim_one_time_prekey(bob, 1) is None


async def test_users_one_time_prekeys_replace_and_limit(users: UserStore, ids: Ids) -> None:
    bob = ids("bob")
    await users.add_one_time_prekeys(bob, 1, [OneTimePreKey(1, b"a" * 32)], max_stored=2)
    assert await users.add_one_time_prekeys(bob, 1, [OneTimePreKey(1, b"b" * 32)], 2) == 1
    with pytest.raises(LimitExceeded):
        await users.add_one_time_prekeys(
            bob, 1, [OneTimePreKey(2, b"c" * 32), OneTimePreKey(3, b"d" * 32)], max_stored=2
        )
    assert await users.count_one_time_prekeys(bob, 1) == 1  # the refused upload left nothing
    assert await users.claim_one_time_prekey(bob, 1) == OneTimePreKey(1, b"b" * 32)
    assert await users.count_one_time_prekeys(bob, 2) == 0


async def test_users_signed_prekey_roundtrip(users: UserStore, ids: Ids) -> None:
    bob = ids("bob")
    assert await users.get_signed_prekey(bob, 1) is None
    first = SignedPreKey(1, b"p" * 32, b"s" * 64)
    await users.set_signed_prekey(bob, 1, first)
    assert await users.get_signed_prekey(bob, 1) == first
    rotated = SignedPreKey(2, b"q" * 32, b"t" * 64)
    await users.set_signed_prekey(bob, 1, rotated)
    assert await users.get_signed_prekey(bob, 1) == rotated
    assert await users.get_signed_prekey(bob, 2) is None

    assert await users.get_identity_key(bob) is None
    await users.set_identity_key(bob, b"i" * 32)
    assert await users.get_identity_key(bob) == b"i" * 32


async def test_users_put_primary_device_drops_old_keys(users: UserStore, ids: Ids) -> None:
    bob = ids("bob")
    await users.create_user(user(bob, ids("+14155550005")))
    await users.put_primary_device(device(bob, PRIMARY_DEVICE, registration_id=1))
    await users.set_signed_prekey(bob, 1, SignedPreKey(1, b"p" * 32, b"s" * 64))
    await users.add_one_time_prekeys(bob, 1, [OneTimePreKey(1, b"o" * 32)], 10)
    await users.put_primary_device(device(bob, PRIMARY_DEVICE, registration_id=2))
    (primary,) = await users.list_devices(bob)
    assert (primary.device_id, primary.registration_id) == (1, 2)
    assert await users.get_signed_prekey(bob, 1) is None
    assert await users.count_one_time_prekeys(bob, 1) == 0


async def test_users_remove_device_drops_its_keys_sessions_and_token(
    users: UserStore, ids: Ids
) -> None:
    bob = ids("bob")
    await users.create_user(user(bob, ids("+14155550006")))
    await users.put_primary_device(device(bob, PRIMARY_DEVICE))
    linked = await users.add_device(device(bob), max_devices=5)
    did = linked.device_id
    await users.set_signed_prekey(bob, did, SignedPreKey(1, b"p" * 32, b"s" * 64))
    await users.add_one_time_prekeys(bob, did, [OneTimePreKey(1, b"o" * 32)], 10)
    await users.put_session(AuthSession(ids("h1"), "access", bob, did, 4_000_000_000.0))
    await users.set_push_token(bob, did, PushToken(Provider.FCM, ids("tok")))
    assert await users.remove_device(bob, did)
    assert [d.device_id for d in await users.list_devices(bob)] == [PRIMARY_DEVICE]
    assert await users.get_signed_prekey(bob, did) is None
    assert await users.count_one_time_prekeys(bob, did) == 0
    assert await users.get_session(ids("h1")) is None
    assert await users.push_tokens_of(bob) == {}


async def test_users_sessions(users: UserStore, ids: Ids) -> None:
    bob = ids("bob")
    access = AuthSession(ids("h1"), "access", bob, 1, 4_000_000_000.0)
    refresh = AuthSession(ids("h2"), "refresh", bob, 1, 4_000_000_000.0)
    expired = AuthSession(ids("h3"), "access", bob, 2, 1.0)  # kept: the service says so
    for session in (access, refresh, expired):
        await users.put_session(session)
    assert await users.get_session(ids("h1")) == access
    assert await users.get_session(ids("h3")) == expired
    await users.delete_session(ids("h1"))
    assert await users.get_session(ids("h1")) is None
    await users.delete_device_sessions(bob, 1)
    assert await users.get_session(ids("h2")) is None
    assert await users.get_session(ids("h3")) == expired
    assert await users.get_session(ids("nope")) is None


async def test_users_profile_update(users: UserStore, ids: Ids) -> None:
    alice = user(ids("alice"), ids("+14155550007"))
    await users.create_user(alice)
    changed = dataclasses.replace(
        alice, display_name="Alice", about="hi", presence_privacy=PresencePrivacy.NOBODY
    )
    await users.update_user(changed)
    assert await users.get_user(alice.id) == changed
    await users.update_user(user(ids("ghost"), ids("+14155550008")))  # no such user: no-op
    assert await users.get_user(ids("ghost")) is None


async def test_users_groups_membership(users: UserStore, ids: Ids) -> None:
    g1, alice, bob, carol = ids("g1"), ids("alice"), ids("bob"), ids("carol")
    assert await users.get_group(g1) is None
    group = Group(g1, "friends", alice, 3.0, {alice: Role.ADMIN, bob: Role.MEMBER})
    await users.create_group(group)
    assert await users.get_group(g1) == group

    await users.set_member(g1, carol, Role.MEMBER)
    await users.set_member(g1, bob, Role.ADMIN)
    await users.remove_member(g1, alice)
    await users.remove_member(g1, ids("nobody"))
    stored = await users.get_group(g1)
    assert stored is not None
    assert stored.members == {bob: Role.ADMIN, carol: Role.MEMBER}
    assert stored.is_admin(bob)
    assert not stored.is_member(alice)
    assert (stored.name, stored.created_by) == ("friends", alice)


async def test_users_contacts(users: UserStore, ids: Ids) -> None:
    alice, bob, carol = ids("alice"), ids("bob"), ids("carol")
    await users.add_contacts(alice, [carol, bob, bob], max_contacts=2)
    assert await users.list_contacts(alice) == [bob, carol]
    assert await users.has_contact(alice, bob)
    assert not await users.has_contact(bob, alice)
    with pytest.raises(LimitExceeded):
        await users.add_contacts(alice, [ids("dave")], max_contacts=2)
    assert await users.list_contacts(alice) == [bob, carol]  # the refused add left nothing
    await users.remove_contact(alice, bob)
    assert await users.list_contacts(alice) == [carol]


async def test_users_ping(users: UserStore) -> None:
    await users.ping()
