"""What the parts of ``CassandraUserStore`` share: the retry loop of its lightweight
transactions and the bound on the queries one call runs at once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tidings.errors import Unavailable

T = TypeVar("T")

CAS_ATTEMPTS = 64
"""Lightweight-transaction retries before giving up with ``Unavailable``."""
FANOUT = 32
"""Concurrent queries of one call (``users_by_phone``, ``devices_of``)."""


async def backoff(attempt: int) -> None:
    """A short random pause before retrying a lost lightweight transaction."""
    await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))


async def cas_loop(what: str, attempt_once: Callable[[], Awaitable[tuple[bool, T]]]) -> T:
    """Run ``attempt_once`` until it reports done (a lightweight transaction applied)."""
    for attempt in range(CAS_ATTEMPTS):
        done, value = await attempt_once()
        if done:
            return value
        await backoff(attempt)
    raise Unavailable(
        f"cassandra: {what}: lost {CAS_ATTEMPTS} lightweight transactions in a row to "
        "concurrent changes; retry"
    )
