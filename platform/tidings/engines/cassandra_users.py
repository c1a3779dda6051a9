"""UserStore on Cassandra: users, devices, keys, sessions, push tokens, contacts, groups.

Where the embedded engine relies on a SQLite transaction, this one uses a lightweight
transaction (Paxos, LOCAL_SERIAL) on a single partition:

- phone uniqueness: ``users`` row first (``IF NOT EXISTS``), then the phone is claimed in
  ``users_by_phone`` with ``IF NOT EXISTS``; the loser deletes its ``users`` row. A
  crash in between leaves a ``users`` row no phone points at, never a phone claimed by
  a user that does not exist;
- devices: each change of a user's device set is a batch conditional on the partition's
  static ``version`` (read at LOCAL_SERIAL, retried when another change won), so ids are
  unique and never reused and ``max_devices`` holds under concurrent calls;
- one-time prekeys: a claim selects candidates and takes one with ``DELETE ... IF
  public_key = ?`` (moving on to the next candidate when another caller won); an upload
  is a batch conditional on the static ``version``, so the stored-count limit holds;
- push tokens: ``push_token_owner`` moves a token by lightweight transaction and is the
  truth: a device's row in ``push_tokens`` counts only while the owner table names it.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tidings.aio import KeyedLocks
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
from tidings.engines.cassandra_schema import Cql, Query, Row, Statements, gather_bounded
from tidings.errors import Conflict, LimitExceeded, Unavailable

T = TypeVar("T")

CAS_ATTEMPTS = 64
"""Lightweight-transaction retries before giving up with ``Unavailable``."""
CLAIM_CANDIDATES = 16
"""One-time prekeys read per claim round; callers try them in random order."""
SESSION_GRACE_S = 24 * 3600
"""Sessions outlive ``expires_at`` by this much, so an expired token reads as expired."""
MAX_TTL_S = 630_720_000
"""Cassandra's largest TTL (20 years)."""
MAX_EXPIRY_S = 2**31 - 1 - 24 * 3600
"""Cassandra (with its default expiration-overflow policy) rejects a TTL that expires
after 2038-01-19 (CASSANDRA-14092), a day of margin below it."""
FANOUT = 32
"""Concurrent queries of one call (``users_by_phone``, ``devices_of``)."""


def _user(row: Row) -> User:
    return User(
        str(row["id"]),
        str(row["phone"]),
        float(row["created_at"]),
        str(row["display_name"] or ""),
        str(row["about"] or ""),
        PresencePrivacy(str(row["presence_privacy"])),
    )


def _device(row: Row) -> Device:
    return Device(
        str(row["user_id"]),
        int(row["device_id"]),
        str(row["name"]),
        int(row["registration_id"]),
        float(row["created_at"]),
    )


def _push_token(row: Row) -> PushToken:
    return PushToken(
        Provider(str(row["provider"])),
        str(row["push_token"]),
        bool(row["alert"]),
        float(row["updated_at"] or 0.0),
    )


async def _backoff(attempt: int) -> None:
    """A short random pause before retrying a lost lightweight transaction."""
    await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))


async def _cas_loop(what: str, attempt_once: Callable[[], Awaitable[tuple[bool, T]]]) -> T:
    for attempt in range(CAS_ATTEMPTS):
        done, value = await attempt_once()
        if done:
            return value
        await _backoff(attempt)
    raise Unavailable(
        f"cassandra: {what}: lost {CAS_ATTEMPTS} lightweight transactions in a row to "
        "concurrent changes; retry"
    )


class CassandraUserStore:
    def __init__(self, cql: Cql, keyspace: str) -> None:
        self.cql = cql
        self.ks = keyspace
        self.q = Statements()
        self._claiming: KeyedLocks[tuple[str, int]] = KeyedLocks()

    async def prepare(self) -> None:
        ks = self.ks
        statements = {
            "ping": ("SELECT release_version FROM system.local", False),
            # users
            "user.insert": (
                f"INSERT INTO {ks}.users (id, phone, created_at, display_name, about, "
                "presence_privacy) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
                False,
            ),
            "user.get": (
                f"SELECT id, phone, created_at, display_name, about, presence_privacy "
                f"FROM {ks}.users WHERE id = ?",
                False,
            ),
            "user.update": (
                f"UPDATE {ks}.users SET display_name = ?, about = ?, presence_privacy = ? "
                "WHERE id = ? IF EXISTS",
                False,
            ),
            "user.delete": (f"DELETE FROM {ks}.users WHERE id = ? IF EXISTS", False),
            "phone.claim": (
                f"INSERT INTO {ks}.users_by_phone (phone, user_id) VALUES (?, ?) IF NOT EXISTS",
                False,
            ),
            "phone.get": (f"SELECT user_id FROM {ks}.users_by_phone WHERE phone = ?", False),
            # devices
            "devices.read": (
                f"SELECT user_id, device_id, name, registration_id, created_at, next_device, "
                f"version FROM {ks}.devices WHERE user_id = ?",
                False,
            ),
            "devices.read_serial": (
                f"SELECT device_id, next_device, version FROM {ks}.devices WHERE user_id = ?",
                True,
            ),
            "devices.bump": (
                f"UPDATE {ks}.devices SET next_device = ?, version = ? WHERE user_id = ? "
                "IF version = ?",
                False,
            ),
            "devices.put": (
                f"INSERT INTO {ks}.devices (user_id, device_id, name, registration_id, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                False,
            ),
            "devices.delete": (
                f"DELETE FROM {ks}.devices WHERE user_id = ? AND device_id = ?",
                False,
            ),
            # keys
            "identity.put": (
                f"INSERT INTO {ks}.identity_keys (user_id, key) VALUES (?, ?)",
                False,
            ),
            "identity.get": (f"SELECT key FROM {ks}.identity_keys WHERE user_id = ?", False),
            "signed.put": (
                f"INSERT INTO {ks}.signed_prekeys (user_id, device_id, key_id, public_key, "
                "signature) VALUES (?, ?, ?, ?, ?)",
                False,
            ),
            "signed.get": (
                f"SELECT key_id, public_key, signature FROM {ks}.signed_prekeys "
                "WHERE user_id = ? AND device_id = ?",
                False,
            ),
            "signed.delete": (
                f"DELETE FROM {ks}.signed_prekeys WHERE user_id = ? AND device_id = ?",
                False,
            ),
            "otpk.ids_serial": (
                f"SELECT key_id, version FROM {ks}.one_time_prekeys "
                "WHERE user_id = ? AND device_id = ?",
                True,
            ),
            "otpk.bump": (
                f"UPDATE {ks}.one_time_prekeys SET version = ? WHERE user_id = ? "
                "AND device_id = ? IF version = ?",
                False,
            ),
            "otpk.put": (
                f"INSERT INTO {ks}.one_time_prekeys (user_id, device_id, key_id, public_key) "
                "VALUES (?, ?, ?, ?)",
                False,
            ),
            "otpk.count": (
                f"SELECT count(key_id) AS n FROM {ks}.one_time_prekeys "
                "WHERE user_id = ? AND device_id = ?",
                False,
            ),
            "otpk.candidates": (
                f"SELECT key_id, public_key FROM {ks}.one_time_prekeys "
                "WHERE user_id = ? AND device_id = ? LIMIT ?",
                False,
            ),
            "otpk.take": (
                f"DELETE FROM {ks}.one_time_prekeys WHERE user_id = ? AND device_id = ? "
                "AND key_id = ? IF public_key = ?",
                False,
            ),
            "otpk.drop": (
                f"DELETE FROM {ks}.one_time_prekeys WHERE user_id = ? AND device_id = ?",
                False,
            ),
            # push tokens
            "push.get": (
                f"SELECT provider, push_token, alert, updated_at FROM {ks}.push_tokens "
                "WHERE user_id = ? AND device_id = ?",
                False,
            ),
            "push.of": (
                f"SELECT device_id, provider, push_token, alert, updated_at FROM {ks}.push_tokens "
                "WHERE user_id = ?",
                False,
            ),
            "push.put": (
                f"INSERT INTO {ks}.push_tokens (user_id, device_id, provider, push_token, alert, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                False,
            ),
            "push.delete_if": (
                f"DELETE FROM {ks}.push_tokens WHERE user_id = ? AND device_id = ? "
                "IF provider = ? AND push_token = ?",
                False,
            ),
            "owner.get": (
                f"SELECT user_id, device_id FROM {ks}.push_token_owner "
                "WHERE provider = ? AND push_token = ?",
                False,
            ),
            "owner.get_serial": (
                f"SELECT user_id, device_id FROM {ks}.push_token_owner "
                "WHERE provider = ? AND push_token = ?",
                True,
            ),
            "owner.claim": (
                f"INSERT INTO {ks}.push_token_owner (provider, push_token, user_id, device_id) "
                "VALUES (?, ?, ?, ?) IF NOT EXISTS",
                False,
            ),
            "owner.move": (
                f"UPDATE {ks}.push_token_owner SET user_id = ?, device_id = ? "
                "WHERE provider = ? AND push_token = ? IF user_id = ? AND device_id = ?",
                False,
            ),
            "owner.release": (
                f"DELETE FROM {ks}.push_token_owner WHERE provider = ? AND push_token = ? "
                "IF user_id = ? AND device_id = ?",
                False,
            ),
            # sessions
            "session.put": (
                f"INSERT INTO {ks}.sessions (token_hash, kind, user_id, device_id, expires_at) "
                "VALUES (?, ?, ?, ?, ?) USING TTL ?",
                False,
            ),
            "session.index": (
                f"INSERT INTO {ks}.sessions_by_device (user_id, device_id, token_hash) "
                "VALUES (?, ?, ?) USING TTL ?",
                False,
            ),
            "session.get": (
                f"SELECT token_hash, kind, user_id, device_id, expires_at FROM {ks}.sessions "
                "WHERE token_hash = ?",
                False,
            ),
            "session.delete": (f"DELETE FROM {ks}.sessions WHERE token_hash = ?", False),
            "session.unindex": (
                f"DELETE FROM {ks}.sessions_by_device WHERE user_id = ? AND device_id = ? "
                "AND token_hash = ?",
                False,
            ),
            "session.of_device": (
                f"SELECT token_hash FROM {ks}.sessions_by_device "
                "WHERE user_id = ? AND device_id = ?",
                False,
            ),
            "session.drop_device": (
                f"DELETE FROM {ks}.sessions_by_device WHERE user_id = ? AND device_id = ?",
                False,
            ),
            # contacts
            "contacts.list": (
                f"SELECT contact_id FROM {ks}.contacts WHERE user_id = ?",
                False,
            ),
            "contacts.put": (
                f"INSERT INTO {ks}.contacts (user_id, contact_id) VALUES (?, ?)",
                False,
            ),
            "contacts.delete": (
                f"DELETE FROM {ks}.contacts WHERE user_id = ? AND contact_id = ?",
                False,
            ),
            "contacts.has": (
                f"SELECT contact_id FROM {ks}.contacts WHERE user_id = ? AND contact_id = ?",
                False,
            ),
            # groups
            "group.put": (
                f"INSERT INTO {ks}.groups (group_id, name, created_by, created_at) "
                "VALUES (?, ?, ?, ?)",
                False,
            ),
            "group.member": (
                f"INSERT INTO {ks}.groups (group_id, user_id, role) VALUES (?, ?, ?)",
                False,
            ),
            "group.get": (
                f"SELECT user_id, role, name, created_by, created_at FROM {ks}.groups "
                "WHERE group_id = ?",
                False,
            ),
            "group.remove": (
                f"DELETE FROM {ks}.groups WHERE group_id = ? AND user_id = ?",
                False,
            ),
        }
        prepared = await asyncio.gather(
            *(
                self.cql.prepare(name, cql, serial=serial)
                for name, (cql, serial) in statements.items()
            )
        )
        self.q = Statements({query.name: query for query in prepared})

    async def ping(self) -> None:
        await self.cql.run(self.q["ping"])

    # users -------------------------------------------------------------------------
    async def create_user(self, user: User) -> tuple[User, bool]:
        q, cql = self.q, self.cql
        inserted, _ = await cql.applied(
            q["user.insert"],
            (
                user.id,
                user.phone,
                user.created_at,
                user.display_name,
                user.about,
                user.presence_privacy.value,
            ),
        )
        if not inserted:  # this id exists: report whoever holds the phone
            owner = await cql.one(q["phone.get"], (user.phone,))
            holder = None if owner is None else await self.get_user(str(owner["user_id"]))
            if holder is None:
                raise Conflict(f"user id {user.id} exists with another phone number")
            return holder, False
        claimed, row = await cql.applied(q["phone.claim"], (user.phone, user.id))
        if claimed:
            return user, True
        await cql.applied(q["user.delete"], (user.id,))
        holder = await self.get_user(str(row["user_id"]))
        if holder is None:  # cannot happen: the holder's users row is written first
            raise Unavailable(f"cassandra: the user holding {user.phone} is not readable; retry")
        return holder, False

    async def get_user(self, user_id: str) -> User | None:
        row = await self.cql.one(self.q["user.get"], (user_id,))
        return None if row is None else _user(row)

    async def users_by_phone(self, phones: Sequence[str]) -> dict[str, User]:
        unique = list(dict.fromkeys(phones))
        owners = await gather_bounded(
            FANOUT, *(self.cql.one(self.q["phone.get"], (phone,)) for phone in unique)
        )
        ids = {phone: str(row["user_id"]) for phone, row in zip(unique, owners, strict=True) if row}
        users = await gather_bounded(FANOUT, *(self.get_user(uid) for uid in ids.values()))
        return {phone: u for phone, u in zip(ids, users, strict=True) if u is not None}

    async def update_user(self, user: User) -> None:
        await self.cql.applied(
            self.q["user.update"],
            (user.display_name, user.about, user.presence_privacy.value, user.id),
        )

    # devices -----------------------------------------------------------------------
    async def _device_set(self, user_id: str) -> tuple[list[int], int | None, int | None]:
        """(device ids, next_device, version) read at LOCAL_SERIAL."""
        rows = await self.cql.run(self.q["devices.read_serial"], (user_id,))
        ids = [int(r["device_id"]) for r in rows if r["device_id"] is not None]
        next_device = rows[0]["next_device"] if rows else None
        version = rows[0]["version"] if rows else None
        return ids, next_device, version

    async def _change_devices(
        self,
        user_id: str,
        version: int | None,
        next_device: int | None,
        change: tuple[Query, Sequence[object]],
    ) -> bool:
        """Apply ``change`` to the device set unless it changed since ``version`` was read."""
        applied, _ = await self.cql.batch_applied(
            "change devices",
            [
                (self.q["devices.bump"], (next_device, (version or 0) + 1, user_id, version)),
                change,
            ],
        )
        return applied

    async def add_device(self, device: Device, max_devices: int) -> Device:
        async def attempt() -> tuple[bool, Device]:
            ids, next_device, version = await self._device_set(device.user_id)
            if len(ids) >= max_devices:
                raise LimitExceeded(
                    f"an account has at most {max_devices} devices; unlink one first"
                )
            new_id = max(next_device or 2, max(ids, default=1) + 1)
            stored = Device(
                device.user_id, new_id, device.name, device.registration_id, device.created_at
            )
            put = (
                self.q["devices.put"],
                (stored.user_id, new_id, stored.name, stored.registration_id, stored.created_at),
            )
            done = await self._change_devices(device.user_id, version, new_id + 1, put)
            return done, stored

        return await _cas_loop("add a device", attempt)

    async def put_primary_device(self, device: Device) -> None:
        await self._drop_device_keys(device.user_id, PRIMARY_DEVICE)

        async def attempt() -> tuple[bool, None]:
            _, next_device, version = await self._device_set(device.user_id)
            put = (
                self.q["devices.put"],
                (
                    device.user_id,
                    PRIMARY_DEVICE,
                    device.name,
                    device.registration_id,
                    device.created_at,
                ),
            )
            return await self._change_devices(device.user_id, version, next_device, put), None

        await _cas_loop("store the primary device", attempt)

    async def list_devices(self, user_id: str) -> list[Device]:
        return await self.devices_of([user_id])

    async def devices_of(self, user_ids: Sequence[str]) -> list[Device]:
        unique = sorted(set(user_ids))
        per_user = await gather_bounded(
            FANOUT, *(self.cql.run(self.q["devices.read"], (uid,)) for uid in unique)
        )
        return [_device(r) for rows in per_user for r in rows if r["device_id"] is not None]

    async def remove_device(self, user_id: str, device_id: int) -> bool:
        async def attempt() -> tuple[bool, bool]:
            ids, next_device, version = await self._device_set(user_id)
            if device_id not in ids:
                return True, False
            delete = (self.q["devices.delete"], (user_id, device_id))
            return await self._change_devices(user_id, version, next_device, delete), True

        removed = await _cas_loop("remove a device", attempt)
        await self._drop_device_keys(user_id, device_id)
        return removed

    async def _drop_device_keys(self, user_id: str, device_id: int) -> None:
        q, cql = self.q, self.cql
        await asyncio.gather(
            cql.run(q["signed.delete"], (user_id, device_id)),
            cql.run(q["otpk.drop"], (user_id, device_id)),
            self.delete_device_sessions(user_id, device_id),
            self.remove_push_token(user_id, device_id),
        )

    # push tokens -------------------------------------------------------------------
    async def _owner(self, provider: str, token: str, *, serial: bool = False) -> tuple[str, int]:
        name = "owner.get_serial" if serial else "owner.get"
        row = await self.cql.one(self.q[name], (provider, token))
        return ("", 0) if row is None else (str(row["user_id"]), int(row["device_id"]))

    async def set_push_token(self, user_id: str, device_id: int, token: PushToken) -> None:
        q, cql = self.q, self.cql
        provider, me = token.provider.value, (user_id, device_id)
        current = await cql.one(q["push.get"], (user_id, device_id))

        async def attempt() -> tuple[bool, tuple[str, int]]:
            owner = await self._owner(provider, token.token, serial=True)
            if owner == me:
                return True, owner
            if owner == ("", 0):
                claimed, _ = await cql.applied(
                    q["owner.claim"], (provider, token.token, user_id, device_id)
                )
            else:
                claimed, _ = await cql.applied(
                    q["owner.move"], (user_id, device_id, provider, token.token, *owner)
                )
            return claimed, owner

        previous = await _cas_loop("register a push token", attempt)
        writes = [
            cql.run(
                q["push.put"],
                (user_id, device_id, provider, token.token, token.alert, token.updated_at),
            )
        ]
        if previous not in (me, ("", 0)):  # the device that held it loses it
            writes.append(cql.run(q["push.delete_if"], (*previous, provider, token.token)))
        held = None if current is None else (current["provider"], current["push_token"])
        if held is not None and held != (provider, token.token):
            # this device's old token is free again
            writes.append(cql.run(q["owner.release"], (*held, *me)))
        await asyncio.gather(*writes)

    async def get_push_token(self, user_id: str, device_id: int) -> PushToken | None:
        row = await self.cql.one(self.q["push.get"], (user_id, device_id))
        if row is None:
            return None
        owner = await self._owner(str(row["provider"]), str(row["push_token"]))
        return _push_token(row) if owner == (user_id, device_id) else None

    async def push_tokens_of(self, user_id: str) -> dict[int, PushToken]:
        rows = await self.cql.run(self.q["push.of"], (user_id,))
        owners = await asyncio.gather(
            *(self._owner(str(r["provider"]), str(r["push_token"])) for r in rows)
        )
        return {
            int(r["device_id"]): _push_token(r)
            for r, owner in zip(rows, owners, strict=True)
            if owner == (user_id, int(r["device_id"]))
        }

    async def remove_push_token(
        self, user_id: str, device_id: int, token: str | None = None
    ) -> bool:
        q, cql = self.q, self.cql
        row = await cql.one(q["push.get"], (user_id, device_id))
        if row is None or (token is not None and row["push_token"] != token):
            return False
        provider, held = str(row["provider"]), str(row["push_token"])
        removed, _ = await cql.applied(q["push.delete_if"], (user_id, device_id, provider, held))
        if not removed:
            return False
        released, _ = await cql.applied(q["owner.release"], (provider, held, user_id, device_id))
        return released  # False: the token had moved to another device already

    # sessions ----------------------------------------------------------------------
    async def put_session(self, session: AuthSession) -> None:
        now = time.time()
        remaining = max(0, math.ceil(session.expires_at - now))
        ttl = max(1, min(MAX_TTL_S, MAX_EXPIRY_S - int(now), remaining + SESSION_GRACE_S))
        await asyncio.gather(
            self.cql.run(
                self.q["session.put"],
                (
                    session.token_hash,
                    session.kind,
                    session.user_id,
                    session.device_id,
                    session.expires_at,
                    ttl,
                ),
            ),
            self.cql.run(
                self.q["session.index"],
                (session.user_id, session.device_id, session.token_hash, ttl),
            ),
        )

    async def get_session(self, token_hash: str) -> AuthSession | None:
        row = await self.cql.one(self.q["session.get"], (token_hash,))
        if row is None:
            return None
        return AuthSession(
            str(row["token_hash"]),
            str(row["kind"]),
            str(row["user_id"]),
            int(row["device_id"]),
            float(row["expires_at"]),
        )

    async def delete_session(self, token_hash: str) -> None:
        session = await self.get_session(token_hash)
        await self.cql.run(self.q["session.delete"], (token_hash,))
        if session is not None:
            await self.cql.run(
                self.q["session.unindex"], (session.user_id, session.device_id, token_hash)
            )

    async def delete_device_sessions(self, user_id: str, device_id: int) -> None:
        rows = await self.cql.run(self.q["session.of_device"], (user_id, device_id))
        await gather_bounded(
            FANOUT,
            *(self.cql.run(self.q["session.delete"], (r["token_hash"],)) for r in rows),
        )
        await self.cql.run(self.q["session.drop_device"], (user_id, device_id))

    # keys --------------------------------------------------------------------------
    async def set_identity_key(self, user_id: str, key: bytes) -> None:
        await self.cql.run(self.q["identity.put"], (user_id, key))

    async def get_identity_key(self, user_id: str) -> bytes | None:
        row = await self.cql.one(self.q["identity.get"], (user_id,))
        return None if row is None else bytes(row["key"])

    async def set_signed_prekey(self, user_id: str, device_id: int, key: SignedPreKey) -> None:
        await self.cql.run(
            self.q["signed.put"], (user_id, device_id, key.key_id, key.public_key, key.signature)
        )

    async def get_signed_prekey(self, user_id: str, device_id: int) -> SignedPreKey | None:
        row = await self.cql.one(self.q["signed.get"], (user_id, device_id))
        if row is None:
            return None
        return SignedPreKey(int(row["key_id"]), bytes(row["public_key"]), bytes(row["signature"]))

    async def add_one_time_prekeys(
        self, user_id: str, device_id: int, keys: Sequence[OneTimePreKey], max_stored: int
    ) -> int:
        q = self.q

        async def attempt() -> tuple[bool, int]:
            rows = await self.cql.run(q["otpk.ids_serial"], (user_id, device_id))
            stored = {int(r["key_id"]) for r in rows if r["key_id"] is not None}
            count = len(stored | {k.key_id for k in keys})
            if count > max_stored:
                raise LimitExceeded(
                    f"a device stores at most {max_stored} one-time prekeys; "
                    f"this upload would make {count}"
                )
            if not keys:
                return True, count
            version = rows[0]["version"] if rows else None
            parts: list[tuple[Query, Sequence[object]]] = [
                (q["otpk.bump"], ((version or 0) + 1, user_id, device_id, version))
            ]
            parts += [(q["otpk.put"], (user_id, device_id, k.key_id, k.public_key)) for k in keys]
            applied, _ = await self.cql.batch_applied("upload one-time prekeys", parts)
            return applied, count

        return await _cas_loop("upload one-time prekeys", attempt)

    async def count_one_time_prekeys(self, user_id: str, device_id: int) -> int:
        row = await self.cql.one(self.q["otpk.count"], (user_id, device_id))
        return 0 if row is None else int(row["n"])

    async def claim_one_time_prekey(self, user_id: str, device_id: int) -> OneTimePreKey | None:
        # Paxos contends per partition, and one device's keys share one: a burst of
        # bundle fetches racing from this process would exhaust Cassandra's own
        # contention retries (a CAS WriteTimeout, outcome unknown). Claims for one device
        # therefore go one at a time here; only other processes race them.
        async with self._claiming((user_id, device_id)):
            return await self._claim_one_time_prekey(user_id, device_id)

    async def _claim_one_time_prekey(self, user_id: str, device_id: int) -> OneTimePreKey | None:
        q, cql = self.q, self.cql
        for attempt in range(CAS_ATTEMPTS):
            rows = await cql.run(q["otpk.candidates"], (user_id, device_id, CLAIM_CANDIDATES))
            candidates = [r for r in rows if r["key_id"] is not None]
            if not candidates:
                return None
            # Oldest key first, as the embedded engine hands them out; after a lost race,
            # random order spreads concurrent claimers over different keys.
            if attempt:
                random.shuffle(candidates)
            for row in candidates:
                key = OneTimePreKey(int(row["key_id"]), bytes(row["public_key"]))
                taken, _ = await cql.applied(
                    q["otpk.take"], (user_id, device_id, key.key_id, key.public_key)
                )
                if taken:
                    return key
            await _backoff(attempt)
        raise Unavailable(
            "cassandra: claim a one-time prekey: every candidate went to another caller "
            f"{CAS_ATTEMPTS} times in a row; retry"
        )

    # contacts ----------------------------------------------------------------------
    async def add_contacts(
        self, user_id: str, contact_ids: Sequence[str], max_contacts: int
    ) -> None:
        rows = await self.cql.run(self.q["contacts.list"], (user_id,))
        current = {str(r["contact_id"]) for r in rows}
        new = [c for c in dict.fromkeys(contact_ids) if c not in current]
        if len(current) + len(new) > max_contacts:
            raise LimitExceeded(f"a contact list holds at most {max_contacts} entries")
        if new:  # one partition: a single unlogged batch
            await self.cql.batch(
                "add contacts", [(self.q["contacts.put"], (user_id, c)) for c in new]
            )

    async def remove_contact(self, user_id: str, contact_id: str) -> None:
        await self.cql.run(self.q["contacts.delete"], (user_id, contact_id))

    async def list_contacts(self, user_id: str) -> list[str]:
        rows = await self.cql.run(self.q["contacts.list"], (user_id,))
        return [str(r["contact_id"]) for r in rows]

    async def has_contact(self, user_id: str, contact_id: str) -> bool:
        return await self.cql.one(self.q["contacts.has"], (user_id, contact_id)) is not None

    # groups ------------------------------------------------------------------------
    async def create_group(self, group: Group) -> None:
        parts: list[tuple[Query, Sequence[object]]] = [
            (self.q["group.put"], (group.id, group.name, group.created_by, group.created_at))
        ]
        parts += [
            (self.q["group.member"], (group.id, uid, role.value))
            for uid, role in group.members.items()
        ]
        await self.cql.batch("create a group", parts)

    async def get_group(self, group_id: str) -> Group | None:
        rows = await self.cql.run(self.q["group.get"], (group_id,))
        if not rows or rows[0]["name"] is None:
            return None
        head = rows[0]
        return Group(
            group_id,
            str(head["name"]),
            str(head["created_by"]),
            float(head["created_at"]),
            {str(r["user_id"]): Role(str(r["role"])) for r in rows if r["user_id"] is not None},
        )

    async def set_member(self, group_id: str, user_id: str, role: Role) -> None:
        await self.cql.run(self.q["group.member"], (group_id, user_id, role.value))

    async def remove_member(self, group_id: str, user_id: str) -> None:
        await self.cql.run(self.q["group.remove"], (group_id, user_id))
