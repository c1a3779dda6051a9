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
from collections.abc import Sequence

from tidings.aio import KeyedLocks
from tidings.core.model import (
    PRIMARY_DEVICE,
    Device,
    PresencePrivacy,
    User,
)
from tidings.engines.cassandra_schema import Cql, Query, Row, Statements, gather_bounded
from tidings.engines.cassandra_sessions import (
    CassandraPushTokens,
    CassandraSessions,
    push_token_statements,
    session_statements,
)
from tidings.engines.cassandra_social import CassandraContacts, CassandraGroups, social_statements
from tidings.engines.cassandra_userbase import FANOUT, cas_loop
from tidings.engines.cassandra_userkeys import CassandraPublicKeys, public_key_statements
from tidings.errors import Conflict, LimitExceeded, Unavailable


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


class CassandraUserStore(
    CassandraPublicKeys, CassandraSessions, CassandraPushTokens, CassandraContacts, CassandraGroups
):
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
        }
        statements |= public_key_statements(ks)
        statements |= session_statements(ks) | push_token_statements(ks)
        statements |= social_statements(ks)
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

        return await cas_loop("add a device", attempt)

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

        await cas_loop("store the primary device", attempt)

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

        removed = await cas_loop("remove a device", attempt)
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
