"""Push tokens on SQLite, mixed into ``SqliteUserStore`` (same database file).

A token is unique per provider: registering it for a device removes it from any
other device in the same transaction, so a reinstalled app's token follows the new
registration.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tidings.core.model import PushToken
from tidings.core.push import Provider
from tidings.engines.embedded.sqlite import SqliteDb

PUSH_TOKENS_SCHEMA = """
CREATE TABLE IF NOT EXISTS push_tokens (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL, provider TEXT NOT NULL,
  token TEXT NOT NULL, alert INTEGER NOT NULL, updated_at REAL NOT NULL,
  PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS push_tokens_by_token ON push_tokens(provider, token);
"""

_TOKEN_COLUMNS = "provider, token, alert, updated_at"


def _push_token(row: Any) -> PushToken:
    provider, token, alert, updated_at = row
    return PushToken(Provider(str(provider)), str(token), bool(alert), float(updated_at))


class PushTokenTable:
    """The push-token half of the ``UserStore`` port."""

    db: SqliteDb

    # push tokens -------------------------------------------------------------------
    async def set_push_token(self, user_id: str, device_id: int, token: PushToken) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM push_tokens WHERE provider=? AND token=? "
                "AND NOT (user_id=? AND device_id=?)",
                (token.provider.value, token.token, user_id, device_id),
            )
            conn.execute(
                "INSERT OR REPLACE INTO push_tokens VALUES(?,?,?,?,?,?)",
                (
                    user_id,
                    device_id,
                    token.provider.value,
                    token.token,
                    int(token.alert),
                    token.updated_at,
                ),
            )

        await self.db.run(fn)

    async def get_push_token(self, user_id: str, device_id: int) -> PushToken | None:
        def fn(conn: sqlite3.Connection) -> PushToken | None:
            row = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM push_tokens WHERE user_id=? AND device_id=?",
                (user_id, device_id),
            ).fetchone()
            return None if row is None else _push_token(row)

        return await self.db.run(fn)

    async def push_tokens_of(self, user_id: str) -> dict[int, PushToken]:
        def fn(conn: sqlite3.Connection) -> dict[int, PushToken]:
            rows = conn.execute(
                f"SELECT device_id, {_TOKEN_COLUMNS} FROM push_tokens WHERE user_id=?",
                (user_id,),
            ).fetchall()
            return {int(r[0]): _push_token(r[1:]) for r in rows}

        return await self.db.run(fn)

    async def remove_push_token(
        self, user_id: str, device_id: int, token: str | None = None
    ) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            if token is None:
                cur = conn.execute(
                    "DELETE FROM push_tokens WHERE user_id=? AND device_id=?",
                    (user_id, device_id),
                )
            else:
                cur = conn.execute(
                    "DELETE FROM push_tokens WHERE user_id=? AND device_id=? AND token=?",
                    (user_id, device_id, token),
                )
            return cur.rowcount == 1

        return await self.db.run(fn)
