"""UserStore on SQLite: users, devices, sessions, keys, contacts and groups."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidings.core.model import (
    PRIMARY_DEVICE,
    AuthSession,
    Device,
    Group,
    OneTimePreKey,
    PresencePrivacy,
    Role,
    SignedPreKey,
    User,
)
from tidings.engines.embedded.push_tokens import PUSH_TOKENS_SCHEMA, PushTokenTable
from tidings.engines.embedded.sqlite import SqliteDb
from tidings.errors import LimitExceeded

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY, phone TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
  display_name TEXT NOT NULL, about TEXT NOT NULL, presence_privacy TEXT NOT NULL,
  next_device INTEGER NOT NULL DEFAULT 2
);
CREATE TABLE IF NOT EXISTS devices (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, name TEXT NOT NULL,
  registration_id INTEGER NOT NULL, created_at REAL NOT NULL,
  PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
  token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, user_id TEXT NOT NULL,
  device_id INTEGER NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_device ON sessions(user_id, device_id);
CREATE TABLE IF NOT EXISTS identity_keys (user_id TEXT PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS signed_prekeys (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL,
  public_key BLOB NOT NULL, signature BLOB NOT NULL, PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS one_time_prekeys (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL,
  public_key BLOB NOT NULL, PRIMARY KEY (user_id, device_id, key_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contacts (
  user_id TEXT NOT NULL, contact_id TEXT NOT NULL, PRIMARY KEY (user_id, contact_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, created_by TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
  group_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
  PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
"""

_USER_COLUMNS = "id, phone, created_at, display_name, about, presence_privacy"
_DEVICE_COLUMNS = "user_id, device_id, name, registration_id, created_at"


def _user(row: Any) -> User:
    uid, phone, created_at, name, about, privacy = row
    return User(
        str(uid),
        str(phone),
        float(created_at),
        str(name),
        str(about),
        PresencePrivacy(str(privacy)),
    )


def _device(row: Any) -> Device:
    uid, did, name, reg, created_at = row
    return Device(str(uid), int(did), str(name), int(reg), float(created_at))


def _drop_device_keys(conn: sqlite3.Connection, user_id: str, device_id: int) -> None:
    for table in ("signed_prekeys", "one_time_prekeys", "sessions", "push_tokens"):
        conn.execute(f"DELETE FROM {table} WHERE user_id=? AND device_id=?", (user_id, device_id))


class SqliteUserStore(PushTokenTable):
    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    @classmethod
    def at(cls, path: Path) -> SqliteUserStore:
        return cls(SqliteDb(path, SCHEMA + PUSH_TOKENS_SCHEMA))

    async def start(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    # users -------------------------------------------------------------------------
    async def create_user(self, user: User) -> tuple[User, bool]:
        def fn(conn: sqlite3.Connection) -> tuple[User, bool]:
            cur = conn.execute(
                f"INSERT OR IGNORE INTO users({_USER_COLUMNS}) VALUES(?,?,?,?,?,?)",
                (
                    user.id,
                    user.phone,
                    user.created_at,
                    user.display_name,
                    user.about,
                    user.presence_privacy.value,
                ),
            )
            row = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE phone=?", (user.phone,)
            ).fetchone()
            return _user(row), cur.rowcount == 1

        return await self.db.run(fn)

    async def get_user(self, user_id: str) -> User | None:
        def fn(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE id=?", (user_id,)
            ).fetchone()
            return None if row is None else _user(row)

        return self.db.read(fn)

    async def users_by_phone(self, phones: Sequence[str]) -> dict[str, User]:
        def fn(conn: sqlite3.Connection) -> dict[str, User]:
            marks = ",".join("?" * len(phones))
            rows = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE phone IN ({marks})", tuple(phones)
            ).fetchall()
            return {u.phone: u for u in map(_user, rows)}

        return self.db.read(fn) if phones else {}

    async def update_user(self, user: User) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "UPDATE users SET display_name=?, about=?, presence_privacy=? WHERE id=?",
                (user.display_name, user.about, user.presence_privacy.value, user.id),
            )
        )

    # devices -----------------------------------------------------------------------
    async def add_device(self, device: Device, max_devices: int) -> Device:
        def fn(conn: sqlite3.Connection) -> Device:
            (count,) = conn.execute(
                "SELECT count(*) FROM devices WHERE user_id=?", (device.user_id,)
            ).fetchone()
            if count >= max_devices:
                raise LimitExceeded(
                    f"an account has at most {max_devices} devices; unlink one first"
                )
            (next_id,) = conn.execute(
                "UPDATE users SET next_device = next_device + 1 WHERE id=? "
                "RETURNING next_device - 1",
                (device.user_id,),
            ).fetchone()
            stored = Device(
                device.user_id, int(next_id), device.name, device.registration_id, device.created_at
            )
            conn.execute(
                f"INSERT INTO devices({_DEVICE_COLUMNS}) VALUES(?,?,?,?,?)",
                (
                    stored.user_id,
                    stored.device_id,
                    stored.name,
                    stored.registration_id,
                    stored.created_at,
                ),
            )
            return stored

        return await self.db.run(fn)

    async def put_primary_device(self, device: Device) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            _drop_device_keys(conn, device.user_id, PRIMARY_DEVICE)
            conn.execute(
                f"INSERT OR REPLACE INTO devices({_DEVICE_COLUMNS}) VALUES(?,?,?,?,?)",
                (
                    device.user_id,
                    PRIMARY_DEVICE,
                    device.name,
                    device.registration_id,
                    device.created_at,
                ),
            )

        await self.db.run(fn)

    async def list_devices(self, user_id: str) -> list[Device]:
        return await self.devices_of([user_id])

    async def devices_of(self, user_ids: Sequence[str]) -> list[Device]:
        def fn(conn: sqlite3.Connection) -> list[Device]:
            marks = ",".join("?" * len(user_ids))
            rows = conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id IN ({marks}) "
                "ORDER BY user_id, device_id",
                tuple(user_ids),
            ).fetchall()
            return [_device(r) for r in rows]

        return self.db.read(fn) if user_ids else []

    async def remove_device(self, user_id: str, device_id: int) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM devices WHERE user_id=? AND device_id=?", (user_id, device_id)
            )
            _drop_device_keys(conn, user_id, device_id)
            return cur.rowcount == 1

        return await self.db.run(fn)

    # sessions ----------------------------------------------------------------------
    async def put_session(self, session: AuthSession) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO sessions VALUES(?,?,?,?,?)",
                (
                    session.token_hash,
                    session.kind,
                    session.user_id,
                    session.device_id,
                    session.expires_at,
                ),
            )
        )

    async def get_session(self, token_hash: str) -> AuthSession | None:
        def fn(conn: sqlite3.Connection) -> AuthSession | None:
            row = conn.execute(
                "SELECT token_hash, kind, user_id, device_id, expires_at FROM sessions "
                "WHERE token_hash=?",
                (token_hash,),
            ).fetchone()
            if row is None:
                return None
            return AuthSession(str(row[0]), str(row[1]), str(row[2]), int(row[3]), float(row[4]))

        return self.db.read(fn)

    async def delete_session(self, token_hash: str) -> None:
        await self.db.run(
            lambda conn: conn.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash,))
        )

    async def delete_device_sessions(self, user_id: str, device_id: int) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "DELETE FROM sessions WHERE user_id=? AND device_id=?", (user_id, device_id)
            )
        )

    # keys --------------------------------------------------------------------------
    async def set_identity_key(self, user_id: str, key: bytes) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO identity_keys VALUES(?,?)", (user_id, key)
            )
        )

    async def get_identity_key(self, user_id: str) -> bytes | None:
        def fn(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT key FROM identity_keys WHERE user_id=?", (user_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        return self.db.read(fn)

    async def set_signed_prekey(self, user_id: str, device_id: int, key: SignedPreKey) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO signed_prekeys VALUES(?,?,?,?,?)",
                (user_id, device_id, key.key_id, key.public_key, key.signature),
            )
        )

    async def get_signed_prekey(self, user_id: str, device_id: int) -> SignedPreKey | None:
        def fn(conn: sqlite3.Connection) -> SignedPreKey | None:
            row = conn.execute(
                "SELECT key_id, public_key, signature FROM signed_prekeys "
                "WHERE user_id=? AND device_id=?",
                (user_id, device_id),
            ).fetchone()
            return None if row is None else SignedPreKey(int(row[0]), bytes(row[1]), bytes(row[2]))

        return self.db.read(fn)

    async def add_one_time_prekeys(
        self, user_id: str, device_id: int, keys: Sequence[OneTimePreKey], max_stored: int
    ) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT OR REPLACE INTO one_time_prekeys VALUES(?,?,?,?)",
                [(user_id, device_id, k.key_id, k.public_key) for k in keys],
            )
            (count,) = conn.execute(
                "SELECT count(*) FROM one_time_prekeys WHERE user_id=? AND device_id=?",
                (user_id, device_id),
            ).fetchone()
            if count > max_stored:
                raise LimitExceeded(
                    f"a device stores at most {max_stored} one-time prekeys; "
                    f"this upload would make {count}"
                )
            return int(count)

        return await self.db.run(fn)

    async def count_one_time_prekeys(self, user_id: str, device_id: int) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                "SELECT count(*) FROM one_time_prekeys WHERE user_id=? AND device_id=?",
                (user_id, device_id),
            ).fetchone()
            return int(count)

        return self.db.read(fn)

    async def claim_one_time_prekey(self, user_id: str, device_id: int) -> OneTimePreKey | None:
        def fn(conn: sqlite3.Connection) -> OneTimePreKey | None:
            row = conn.execute(
                "DELETE FROM one_time_prekeys WHERE user_id=? AND device_id=? AND key_id = "
                "(SELECT min(key_id) FROM one_time_prekeys WHERE user_id=? AND device_id=?) "
                "RETURNING key_id, public_key",
                (user_id, device_id, user_id, device_id),
            ).fetchone()
            return None if row is None else OneTimePreKey(int(row[0]), bytes(row[1]))

        return await self.db.run(fn)

    # contacts ----------------------------------------------------------------------
    async def add_contacts(
        self, user_id: str, contact_ids: Sequence[str], max_contacts: int
    ) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO contacts VALUES(?,?)", [(user_id, c) for c in contact_ids]
            )
            (count,) = conn.execute(
                "SELECT count(*) FROM contacts WHERE user_id=?", (user_id,)
            ).fetchone()
            if count > max_contacts:
                raise LimitExceeded(f"a contact list holds at most {max_contacts} entries")

        await self.db.run(fn)

    async def remove_contact(self, user_id: str, contact_id: str) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "DELETE FROM contacts WHERE user_id=? AND contact_id=?", (user_id, contact_id)
            )
        )

    async def list_contacts(self, user_id: str) -> list[str]:
        def fn(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT contact_id FROM contacts WHERE user_id=? ORDER BY contact_id", (user_id,)
            ).fetchall()
            return [str(r[0]) for r in rows]

        return self.db.read(fn)

    async def has_contact(self, user_id: str, contact_id: str) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM contacts WHERE user_id=? AND contact_id=?", (user_id, contact_id)
            ).fetchone()
            return row is not None

        return self.db.read(fn)

    # groups ------------------------------------------------------------------------
    async def create_group(self, group: Group) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO groups VALUES(?,?,?,?)",
                (group.id, group.name, group.created_by, group.created_at),
            )
            conn.executemany(
                "INSERT INTO group_members VALUES(?,?,?)",
                [(group.id, uid, role.value) for uid, role in group.members.items()],
            )

        await self.db.run(fn)

    async def get_group(self, group_id: str) -> Group | None:
        def fn(conn: sqlite3.Connection) -> Group | None:
            row = conn.execute(
                "SELECT id, name, created_by, created_at FROM groups WHERE id=?", (group_id,)
            ).fetchone()
            if row is None:
                return None
            members = conn.execute(
                "SELECT user_id, role FROM group_members WHERE group_id=? ORDER BY user_id",
                (group_id,),
            ).fetchall()
            return Group(
                str(row[0]),
                str(row[1]),
                str(row[2]),
                float(row[3]),
                {str(uid): Role(str(role)) for uid, role in members},
            )

        return self.db.read(fn, snapshot=True)

    async def set_member(self, group_id: str, user_id: str, role: Role) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO group_members VALUES(?,?,?)",
                (group_id, user_id, role.value),
            )
        )

    async def remove_member(self, group_id: str, user_id: str) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "DELETE FROM group_members WHERE group_id=? AND user_id=?", (group_id, user_id)
            )
        )
