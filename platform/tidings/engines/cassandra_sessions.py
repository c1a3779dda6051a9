"""Sessions and PushTokens on Cassandra (parts of ``CassandraUserStore``)."""

from __future__ import annotations

import asyncio
import math
import time

from tidings.core.model import AuthSession, PushToken
from tidings.core.push import Provider
from tidings.engines.cassandra_reads import PointRead
from tidings.engines.cassandra_schema import Cql, Row, Statements, gather_bounded
from tidings.engines.cassandra_userbase import FANOUT, cas_loop

SESSION_GRACE_S = 24 * 3600
"""Sessions outlive ``expires_at`` by this much, so an expired token reads as expired."""
MAX_TTL_S = 630_720_000
"""Cassandra's largest TTL (20 years)."""
MAX_EXPIRY_S = 2**31 - 1 - 24 * 3600
"""Cassandra (with its default expiration-overflow policy) rejects a TTL that expires
after 2038-01-19 (CASSANDRA-14092), a day of margin below it."""


def _push_token(row: Row) -> PushToken:
    return PushToken(
        Provider(str(row["provider"])),
        str(row["push_token"]),
        bool(row["alert"]),
        float(row["updated_at"] or 0.0),
    )


def session_statements(ks: str) -> dict[str, tuple[str, bool]]:
    """The statements of ``CassandraSessions``."""
    return {
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
        "session.get_many": (
            f"SELECT token_hash, kind, user_id, device_id, expires_at FROM {ks}.sessions "
            "WHERE token_hash IN ?",
            False,
        ),
        "session.delete": (f"DELETE FROM {ks}.sessions WHERE token_hash = ?", False),
        "session.unindex": (
            f"DELETE FROM {ks}.sessions_by_device WHERE user_id = ? AND device_id = ? "
            "AND token_hash = ?",
            False,
        ),
        "session.of_device": (
            f"SELECT token_hash FROM {ks}.sessions_by_device WHERE user_id = ? AND device_id = ?",
            False,
        ),
        "session.drop_device": (
            f"DELETE FROM {ks}.sessions_by_device WHERE user_id = ? AND device_id = ?",
            False,
        ),
    }


class CassandraSessions:
    """Bearer sessions of ``CassandraUserStore``."""

    cql: Cql
    q: Statements

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
        # Sockets connecting at once look their sessions up in one request.
        read = PointRead(self.q["session.get"], self.q["session.get_many"], "token_hash")
        rows = await self.cql.read_shared(read, token_hash)
        if not rows:
            return None
        row = rows[0]
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


def push_token_statements(ks: str) -> dict[str, tuple[str, bool]]:
    """The statements of ``CassandraPushTokens``."""
    return {
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
    }


class CassandraPushTokens:
    """Push tokens of ``CassandraUserStore``."""

    cql: Cql
    q: Statements

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

        previous = await cas_loop("register a push token", attempt)
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
