"""The Redis engine's command connection pool: bounded, waiting briefly when full."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

DEFAULT_POOL_TIMEOUT = 5.0
"""Seconds a command waits for a free pooled connection unless the URL says ``timeout``."""


class _PoolExhausted(RedisConnectionError):
    """Every pooled connection stayed busy for the pool's whole timeout."""


class BoundedPool(aioredis.ConnectionPool):
    """At most ``max_connections``; a command finding them all busy waits up to
    ``timeout`` seconds for one to be released, then gives up naming the pool and what to
    do about it.

    redis-py's own ``BlockingConnectionPool`` waits the same way, but takes a condition,
    a timeout scope and four metrics hooks on every command, busy or not: about a third
    of the client CPU of a command on the message path. Here a command that finds a
    connection free takes it at once, and only a waiting one pays for the wait."""

    def __init__(self, *, timeout: float = DEFAULT_POOL_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self.can_get_connection():
            await self._wait_for_a_release()
        connection = self.get_available_connection()  # type: ignore[no-untyped-call]
        try:
            await self.ensure_connection(connection)  # connects; refuses a dirty one
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def _wait_for_a_release(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not self.can_get_connection():
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError as exc:
                raise _PoolExhausted(
                    f"the Redis connection pool is exhausted (all {self.max_connections} "
                    f"connections busy for {self.timeout} s); raise "
                    "TIDINGS_REDIS_MAX_CONNECTIONS (a ?max_connections=N in TIDINGS_REDIS_URL "
                    "wins) or add gateways"
                ) from exc
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def release(self, connection: Any) -> None:
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():
            await connection.disconnect()
        self._available_connections.append(connection)
        while self._waiters:  # hand it to the longest waiting command still waiting
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
