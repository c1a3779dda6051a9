"""Encrypted backups of a device's local store: keys, tokens, sessions, sender keys, history.

Format (all integers big-endian)::

    magic "TDGBK" | version 0x01 | log2(N) u8 | r u8 | p u8 | salt (16) | nonce (12) | ciphertext

The key is ``scrypt(passphrase (UTF-8, NFC), salt, N, r, p)`` -> 32 bytes (memory-hard:
N = 2**17, r = 8 is 128 MiB); the ciphertext is AES-256-GCM over zlib-compressed JSON
(``{"v": 1, "tables": {table: [row, ...]}}``, byte columns as ``{"$b": base64}``) with the
whole header as associated data, so tampering with the cost parameters also fails. A wrong
passphrase fails authentication and raises :class:`BackupError`.

Restoring puts the device back exactly as it was (same device id, tokens and sessions):
it is meant for a lost device, not for running two copies at once (their ratchets would
diverge).
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import unicodedata
import zlib
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tidings.client.crypto.errors import CryptoError
from tidings.client.store import LocalStore

MAGIC = b"TDGBK"
VERSION = 1
SALT_BYTES = 16
NONCE_BYTES = 12
LOG2_N, R, P = 17, 8, 1
MIN_LOG2_N, MAX_LOG2_N = 10, 20
_HEADER = struct.Struct(">5sBBBB")
TABLES = (
    "kv",
    "sessions",
    "registrations",
    "archived_sessions",
    "identities",
    "own_sender_keys",
    "group_receivers",
    "messages",
    "processed",
)
SKIP_KV = frozenset({"link_request"})  # a pending link request is not worth restoring


class BackupError(CryptoError):
    """Wrong passphrase, a corrupted or foreign backup, or a target store already in use."""


def _derive(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    if not passphrase:
        raise BackupError("a backup passphrase may not be empty")
    secret = unicodedata.normalize("NFC", passphrase).encode()
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p).derive(secret)


def _cell(value: Any) -> Any:
    return {"$b": base64.b64encode(value).decode()} if isinstance(value, bytes) else value


def _uncell(value: Any) -> Any:
    return base64.b64decode(value["$b"]) if isinstance(value, dict) else value


def dump_store(store: LocalStore) -> dict[str, Any]:
    """Every table, read in one transaction: a chat writing to the store meanwhile (a
    ratchet step, a message) is in the backup entirely or not at all."""
    tables: dict[str, list[list[Any]]] = {}
    store.db.execute("BEGIN")
    try:
        for table in TABLES:
            rows = store.db.execute(f"SELECT * FROM {table}").fetchall()
            if table == "kv":
                rows = [r for r in rows if r[0] not in SKIP_KV]
            tables[table] = [[_cell(v) for v in row] for row in rows]
    finally:
        store.db.execute("COMMIT")
    return {"v": VERSION, "tables": tables}


def load_store(store: LocalStore, snapshot: dict[str, Any]) -> None:
    """Write a :func:`dump_store` snapshot into an empty store, in one transaction."""
    if store.get("device_keys") is not None or store.get("tokens") is not None:
        raise BackupError(f"{store.path} already holds an account; restore into a new path")
    tables = snapshot.get("tables")
    if snapshot.get("v") != VERSION or not isinstance(tables, dict):
        raise BackupError("backup content has an unknown layout")
    store.db.execute("BEGIN")
    try:
        for table in TABLES:
            for row in tables.get(table, []):
                marks = ",".join("?" * len(row))
                cells = tuple(_uncell(v) for v in row)
                store.db.execute(f"INSERT OR REPLACE INTO {table} VALUES({marks})", cells)
    except BaseException:
        store.db.execute("ROLLBACK")
        raise
    store.db.execute("COMMIT")


def encrypt_backup(snapshot: dict[str, Any], passphrase: str, *, log2_n: int = LOG2_N) -> bytes:
    salt, nonce = secrets.token_bytes(SALT_BYTES), secrets.token_bytes(NONCE_BYTES)
    header = _HEADER.pack(MAGIC, VERSION, log2_n, R, P) + salt + nonce
    key = _derive(passphrase, salt, log2_n, R, P)
    plaintext = zlib.compress(json.dumps(snapshot, separators=(",", ":")).encode())
    return header + AESGCM(key).encrypt(nonce, plaintext, header)


def decrypt_backup(blob: bytes, passphrase: str) -> dict[str, Any]:
    head = _HEADER.size + SALT_BYTES + NONCE_BYTES
    if len(blob) < head + 16:
        raise BackupError("not a Tidings backup (too short)")
    magic, version, log2_n, r, p = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise BackupError("not a Tidings backup (bad magic)")
    if version != VERSION:
        raise BackupError(f"backup version {version} is not supported")
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise BackupError("backup has implausible key-derivation parameters")
    salt = blob[_HEADER.size : _HEADER.size + SALT_BYTES]
    nonce = blob[_HEADER.size + SALT_BYTES : head]
    key = _derive(passphrase, salt, log2_n, r, p)
    try:
        plaintext = AESGCM(key).decrypt(nonce, blob[head:], blob[:head])
    except InvalidTag:
        raise BackupError("wrong passphrase, or the backup is corrupted") from None
    try:
        snapshot: dict[str, Any] = json.loads(zlib.decompress(plaintext))
    except (zlib.error, ValueError) as exc:
        raise BackupError(f"backup content is unreadable: {exc}") from exc
    return snapshot


def export_store(store: LocalStore, passphrase: str, *, log2_n: int = LOG2_N) -> bytes:
    return encrypt_backup(dump_store(store), passphrase, log2_n=log2_n)


def restore_store(blob: bytes, passphrase: str, store_path: Path) -> None:
    """Decrypt first (nothing is written on a wrong passphrase), then fill ``store_path``."""
    snapshot = decrypt_backup(blob, passphrase)
    store = LocalStore(store_path)
    try:
        load_store(store, snapshot)
    finally:
        store.close()
