"""Mailbox (bounded, drop-oldest, one consumer) and Flag (an Event for one waiter)."""

from __future__ import annotations

import asyncio

from tidings.aio import Flag, Mailbox


async def test_mailbox_keeps_order_and_drops_the_oldest_when_full() -> None:
    box: Mailbox[int] = Mailbox(depth=3)
    for i in range(5):
        box.put(i)
    assert [await box.get() for _ in range(3)] == [2, 3, 4]


async def test_mailbox_get_waits_for_a_put() -> None:
    box: Mailbox[str] = Mailbox(depth=2)
    getter = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert not getter.done()
    box.put("wake")
    assert await asyncio.wait_for(getter, 1.0) == "wake"


async def test_flag_wait_returns_at_once_when_set_and_false_on_timeout() -> None:
    flag = Flag()
    assert await flag.wait(0.01) is False
    flag.set()
    assert await flag.wait(0.01) is True
    flag.clear()
    assert not flag.is_set()


async def test_flag_set_wakes_its_waiter() -> None:
    flag = Flag()
    waiter = asyncio.create_task(flag.wait(5.0))
    await asyncio.sleep(0)
    flag.set()
    assert await asyncio.wait_for(waiter, 1.0) is True
