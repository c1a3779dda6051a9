"""KeyedLocks: one lock per key, shared while in use, forgotten afterwards."""

from __future__ import annotations

import asyncio
import gc

from tidings.aio import KeyedLocks


async def test_same_key_shares_a_lock_and_other_keys_do_not_wait() -> None:
    locks: KeyedLocks[tuple[str, int]] = KeyedLocks()
    order: list[str] = []

    async def hold(key: tuple[str, int], name: str, pause: float) -> None:
        async with locks(key):
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    await asyncio.gather(
        hold(("bob", 1), "a", 0.02), hold(("bob", 1), "b", 0), hold(("eve", 1), "c", 0)
    )
    # b waits for a; c (another key) runs while a holds its lock.
    assert order.index("a-") < order.index("b+")
    assert order.index("c+") < order.index("a-")


async def test_a_lock_nobody_holds_is_forgotten() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    async with locks("bob"):
        assert locks("bob").locked()
    gc.collect()
    assert not locks._locks
