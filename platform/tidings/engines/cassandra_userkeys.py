"""PublicKeys on Cassandra: identity keys, signed prekeys and one-time prekeys (a part of
``CassandraUserStore``; see its module for the lightweight transactions).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tidings.aio import KeyedLocks
from tidings.core.model import OneTimePreKey, SignedPreKey
from tidings.engines.cassandra_schema import Cql, Query, Statements
from tidings.engines.cassandra_userbase import CAS_ATTEMPTS, backoff, cas_loop
from tidings.errors import LimitExceeded, Unavailable

CLAIM_CANDIDATES = 16
"""One-time prekeys read per claim round; callers try them in random order."""


def public_key_statements(ks: str) -> dict[str, tuple[str, bool]]:
    """The statements of ``CassandraPublicKeys``."""
    return {
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
    }


class CassandraPublicKeys:
    """Identity keys and prekeys of ``CassandraUserStore``."""

    cql: Cql
    q: Statements
    _claiming: KeyedLocks[tuple[str, int]]

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

        return await cas_loop("upload one-time prekeys", attempt)

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
            await backoff(attempt)
        raise Unavailable(
            "cassandra: claim a one-time prekey: every candidate went to another caller "
            f"{CAS_ATTEMPTS} times in a row; retry"
        )
