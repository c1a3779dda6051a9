"""Choosing the 1:1 session that decrypts an incoming envelope.

Two devices that start a session with each other at the same moment each end up with
two sessions: the one they initiated and the one they accepted. As in Signal, the
newest is current and a few older ones are archived; an envelope is tried against
every session that could own it, and the one that decrypts becomes current. Both
sides then converge on one session without losing a message.
"""

from __future__ import annotations

from typing import Protocol

from tidings.client.crypto.errors import DecryptionFailed, SessionMismatch
from tidings.client.crypto.identity import DeviceKeys
from tidings.client.crypto.session import Session

ARCHIVED_PER_DEVICE = 4


class SessionStore(Protocol):
    def session(self, user_id: str, device_id: int) -> bytes | None: ...
    def put_session(self, user_id: str, device_id: int, state: bytes) -> None: ...
    def archived_sessions(self, user_id: str, device_id: int) -> list[tuple[int, bytes]]: ...
    def archive_session(self, user_id: str, device_id: int, state: bytes, keep: int) -> None: ...
    def drop_archived_session(self, seq: int) -> None: ...


async def decrypt(
    keys: DeviceKeys, store: SessionStore, user_id: str, device_id: int, data: bytes
) -> bytes:
    """Decrypt ``data`` from (user, device), keeping the store's sessions in step.

    Raises the crypto errors of :mod:`tidings.client.crypto.errors` (a replay raises
    ``DuplicateMessage``); a failed attempt never changes a stored session.
    """
    plaintext, _ = await decrypt_from(keys, store, user_id, device_id, data)
    return plaintext


async def decrypt_from(
    keys: DeviceKeys, store: SessionStore, user_id: str, device_id: int, data: bytes
) -> tuple[bytes, bytes]:
    """:func:`decrypt`, also returning the identity key of the session that decrypted:
    the sender's, as proven by the X3DH that set the session up."""
    raw = store.session(user_id, device_id)
    current = Session.from_bytes(raw) if raw else None
    candidates: list[tuple[int | None, Session]] = []
    if current is not None and current.owns(data):
        candidates.append((None, current))
    for archived_seq, state in store.archived_sessions(user_id, device_id):
        archived = Session.from_bytes(state)
        if archived.owns(data):
            candidates.append((archived_seq, archived))
    if not candidates:
        # A new session set up by the peer: it becomes current, ours is archived.
        session, plaintext = await Session.accept(keys, data)
        if current is not None:
            store.archive_session(user_id, device_id, current.to_bytes(), ARCHIVED_PER_DEVICE)
        store.put_session(user_id, device_id, session.to_bytes())
        return plaintext, session.remote_identity_key
    first_error: Exception | None = None
    for seq, session in candidates:
        try:
            plaintext = await session.decrypt(data)
        except (DecryptionFailed, SessionMismatch) as exc:
            first_error = first_error or exc
            continue
        if seq is not None:  # the peer uses an archived session: promote it
            store.drop_archived_session(seq)
            if current is not None:
                store.archive_session(user_id, device_id, current.to_bytes(), ARCHIVED_PER_DEVICE)
        store.put_session(user_id, device_id, session.to_bytes())
        return plaintext, session.remote_identity_key
    assert first_error is not None
    raise first_error
