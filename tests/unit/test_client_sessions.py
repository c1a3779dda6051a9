"""Two devices that start sessions with each other at once converge without loss."""

from __future__ import annotations

import itertools

import pytest

from tidings.client import sessions
from tidings.client.crypto.errors import DuplicateMessage
from tidings.client.crypto.identity import DeviceKeys, PreKeyBundle
from tidings.client.crypto.session import Session


class MemoryStore:
    """The slice of the local store that session selection uses."""

    def __init__(self) -> None:
        self.current: dict[tuple[str, int], bytes] = {}
        self.archived: dict[int, tuple[str, int, bytes]] = {}
        self._seq = itertools.count(1)

    def session(self, user_id: str, device_id: int) -> bytes | None:
        return self.current.get((user_id, device_id))

    def put_session(self, user_id: str, device_id: int, state: bytes) -> None:
        self.current[(user_id, device_id)] = state

    def archived_sessions(self, user_id: str, device_id: int) -> list[tuple[int, bytes]]:
        return sorted(
            (
                (seq, s)
                for seq, (u, d, s) in self.archived.items()
                if (u, d) == (user_id, device_id)
            ),
            reverse=True,
        )

    def archive_session(self, user_id: str, device_id: int, state: bytes, keep: int) -> None:
        self.archived[next(self._seq)] = (user_id, device_id, state)
        for seq, _ in self.archived_sessions(user_id, device_id)[keep:]:
            del self.archived[seq]

    def drop_archived_session(self, seq: int) -> None:
        del self.archived[seq]


def _bundle(keys: DeviceKeys) -> PreKeyBundle:
    spk = keys.signed_prekey
    opk = keys.generate_one_time_prekeys(1)[0]
    return PreKeyBundle(
        keys.identity.public_key,
        spk.key_id,
        spk.public_key,
        spk.signature,
        opk.key_id,
        opk.public_key,
    )


async def _send(store: MemoryStore, peer: str, text: bytes) -> bytes:
    session = Session.from_bytes(store.current[(peer, 1)])
    data = await session.encrypt(text)
    store.put_session(peer, 1, session.to_bytes())
    return data


async def test_simultaneous_initiation_converges_and_loses_nothing() -> None:
    alice_keys, bob_keys = DeviceKeys.generate(), DeviceKeys.generate()
    alice, bob = MemoryStore(), MemoryStore()
    # Both start a session before hearing from the other.
    alice.put_session("bob", 1, (await Session.initiate(alice_keys, _bundle(bob_keys))).to_bytes())
    bob.put_session("alice", 1, (await Session.initiate(bob_keys, _bundle(alice_keys))).to_bytes())
    from_alice = await _send(alice, "bob", b"a1")
    from_bob = await _send(bob, "alice", b"b1")

    assert await sessions.decrypt(bob_keys, bob, "alice", 1, from_alice) == b"a1"
    assert await sessions.decrypt(alice_keys, alice, "bob", 1, from_bob) == b"b1"

    # Each now sends on its newest session; the other finds the right one.
    for i in range(5):
        text = f"a{i + 2}".encode()
        assert (
            await sessions.decrypt(bob_keys, bob, "alice", 1, await _send(alice, "bob", text))
            == text
        )
        text = f"b{i + 2}".encode()
        assert (
            await sessions.decrypt(alice_keys, alice, "bob", 1, await _send(bob, "alice", text))
            == text
        )


async def test_replay_through_session_selection_is_still_a_duplicate() -> None:
    alice_keys, bob_keys = DeviceKeys.generate(), DeviceKeys.generate()
    alice, bob = MemoryStore(), MemoryStore()
    alice.put_session("bob", 1, (await Session.initiate(alice_keys, _bundle(bob_keys))).to_bytes())
    first = await _send(alice, "bob", b"once")
    assert await sessions.decrypt(bob_keys, bob, "alice", 1, first) == b"once"
    with pytest.raises(DuplicateMessage):
        await sessions.decrypt(bob_keys, bob, "alice", 1, first)
