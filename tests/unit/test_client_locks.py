"""One connection holder per device and serialized ratchet steps across processes
(``flock`` conflicts between open files even inside one process, so no subprocess is
needed to show it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tidings.client.locks import RatchetLock, SocketHeld, hold_socket, socket_lock_path


def test_a_second_holder_is_told_who_holds_the_socket(tmp_path: Path) -> None:
    store = tmp_path / "+15550001.db"
    with hold_socket(store, "tidings chat"):
        assert socket_lock_path(store).stat().st_mode & 0o777 == 0o600
        with (
            pytest.raises(SocketHeld, match=r"^tidings chat \(pid \d+\) holds"),
            hold_socket(store, "tidings inbox"),
        ):
            pass
    with hold_socket(store, "tidings inbox"):  # released on the way out
        pass


async def test_ratchet_steps_of_two_clients_on_one_store_never_interleave(
    tmp_path: Path,
) -> None:
    store = tmp_path / "+15550001.db"
    first, second = RatchetLock(store), RatchetLock(store)  # as two processes would
    inside: list[str] = []

    async def step(lock: RatchetLock, name: str) -> None:
        for _ in range(5):
            async with lock.held():
                inside.append(name)
                await asyncio.sleep(0.002)  # another holder would get in here
                assert inside[-1] == name
                inside.append(f"/{name}")

    async with asyncio.timeout(10):
        await asyncio.gather(step(first, "a"), step(second, "b"))
    pairs = list(zip(inside[::2], inside[1::2], strict=True))
    assert all(end == "/" + start for start, end in pairs)
    assert sorted(start for start, _ in pairs) == ["a"] * 5 + ["b"] * 5
