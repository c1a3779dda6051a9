"""PresenceStore on a real Redis server (redis-py's asyncio client).

Layout, every key and channel under ``prefix`` (default ``tidings:``):

- ``presence:<user>:<device>``: ``1`` with a PX TTL while the device is online;
- ``presence-devices:<user>``: the set of device ids that were set online (an index,
  so ``get_presence`` never scans the keyspace; it expires with the longest TTL given);
- ``last-seen``: hash user -> last ``set_offline`` time (``repr`` of the float);
- ``presence-expiry``: sorted set ``<user>\\n<device>`` scored by when the device's
  online TTL runs out, so ``reap_expired`` finds devices whose gateway died;
- ``bucket:<key>``: token bucket hash ``tokens``/``updated``/``expires``;
- ``kv:<key>``: ``put_if_absent``/``get``/``set``/``delete``/``incr`` values;
- pub/sub channel ``<prefix><channel>`` (Pub/Sub ignores the database number, so the
  prefix is what isolates two stores sharing a server).

Connections. A store holds two kinds, so the number of Redis connections of a gateway
does not grow with its sockets:

- Commands go through a bounded pool (``redis_pool.BoundedPool``): at most
  ``max_connections`` (default 64; ``TIDINGS_REDIS_MAX_CONNECTIONS``; a
  ``?max_connections=N`` in the URL wins) named ``<prefix>cmd``. A burst waits up to
  ``pool_timeout`` seconds (default 5; ``TIDINGS_REDIS_POOL_TIMEOUT``; ``?timeout=S``
  wins) for a free connection instead of failing; a pool still exhausted after that
  raises ``Unavailable`` saying so (raise ``max_connections`` or add gateways).
- Pub/Sub takes ONE connection per store (per process), outside the pool, multiplexed
  to every subscription, so ``publish`` counts receiving stores, not sockets: see
  ``tidings.engines.redis_pubsub``.

Every driver error is translated into ``tidings.errors.Unavailable`` (``raise ... from``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import NoScriptError

from tidings.core.model import Presence
from tidings.core.ratelimit import Decision, Limit, idle_expiry
from tidings.engines import redis_scripts
from tidings.engines.redis_pool import DEFAULT_POOL_TIMEOUT, BoundedPool
from tidings.engines.redis_pubsub import PubSubHub, RedisSubscription, client_name, translated
from tidings.engines.redis_shared import SharedPipelines
from tidings.errors import Unavailable

__all__ = ["RedisPresenceStore", "RedisSubscription"]  # RedisSubscription: from redis_pubsub

DEFAULT_MAX_CONNECTIONS = 64
"""Command connections per store (per process) unless the URL says ``max_connections``."""


def _as_bytes(value: object) -> bytes | None:
    """Replies are bytes (the client never decodes); anything else is a protocol error."""
    if value is None or isinstance(value, bytes):
        return value
    raise Unavailable(f"redis: unexpected reply {value!r}")


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisPresenceStore:
    def __init__(self, client: aioredis.Redis, *, prefix: str = "tidings:") -> None:
        self._redis = client
        self.prefix = prefix
        self._take_token = client.register_script(redis_scripts.TAKE_TOKEN)
        self._set_online = client.register_script(redis_scripts.SET_ONLINE)
        self._set_offline = client.register_script(redis_scripts.SET_OFFLINE)
        self._incr = client.register_script(redis_scripts.INCR)
        self._reap = client.register_script(redis_scripts.REAP)
        self._shared = SharedPipelines(client)
        """The hot path's commands: one pipeline per turn of the loop for every caller."""
        self._hub: PubSubHub | None = None
        self._hub_opening: asyncio.Future[PubSubHub] | None = None
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tidings:",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> RedisPresenceStore:
        """``redis://host:port/db`` (see redis-py's ``from_url`` for the options).

        Commands use a blocking pool of ``max_connections`` (a ``?max_connections=`` in
        the URL wins) that waits ``pool_timeout`` seconds (``?timeout=`` wins) for a
        free connection; Pub/Sub uses one more connection of its own.
        """
        pool = BoundedPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            client_name=client_name(prefix, "cmd"),
        )
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix)

    # keys
    def _device_key(self, user_id: str, device_id: int) -> str:
        return f"{self._device_key_prefix(user_id)}{device_id}"

    def _device_key_prefix(self, user_id: str) -> str:
        """What the user's device keys start with (``SET_OFFLINE`` adds the ids)."""
        return f"{self.prefix}presence:{user_id}:"

    @staticmethod
    def _expiry_member(user_id: str, device_id: int) -> str:
        return f"{user_id}\n{device_id}"  # REAP splits it at the line break

    def _devices_key(self, user_id: str) -> str:
        return f"{self.prefix}presence-devices:{user_id}"

    @property
    def _last_seen_key(self) -> str:
        return f"{self.prefix}last-seen"

    @property
    def _expiry_key(self) -> str:
        return f"{self.prefix}presence-expiry"

    def _kv(self, key: str) -> str:
        return f"{self.prefix}kv:{key}"

    # presence
    async def set_online(self, user_id: str, device_id: int, ttl: float) -> Presence:
        keys = [self._device_key(user_id, device_id), self._devices_key(user_id)]
        keys += [self._expiry_key, self._last_seen_key]
        member = self._expiry_member(user_id, device_id)
        args = [_ms(ttl), device_id, repr(time.time() + ttl), member, user_id]
        with translated("set_online"):
            seen = await self._shared_script(self._set_online, keys, args)
        return Presence(user_id, True, float(seen) if seen is not None else None)

    async def set_offline(self, user_id: str, device_id: int, now: float) -> Presence:
        keys = [self._device_key(user_id, device_id), self._devices_key(user_id)]
        keys += [self._last_seen_key, self._expiry_key]
        args = [device_id, user_id, repr(now), self._expiry_member(user_id, device_id)]
        args.append(self._device_key_prefix(user_id))
        with translated("set_offline"):
            others_online = await self._shared_script(self._set_offline, keys, args)
        return Presence(user_id, bool(others_online), now)

    async def reap_expired(self, now: float, limit: int) -> list[tuple[str, int]]:
        keys = [self._expiry_key, self._last_seen_key]
        with translated("reap_expired"):
            members = await self._reap(
                keys=keys, args=[repr(now), limit, f"{self.prefix}presence-devices:"]
            )
        out: list[tuple[str, int]] = []
        for member in members:
            user_id, _, device = bytes(member).decode().partition("\n")
            out.append((user_id, int(device)))
        return out

    async def get_presence(self, user_ids: Sequence[str]) -> list[Presence]:
        if not user_ids:
            return []
        with translated("get_presence"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.smembers(self._devices_key(user_id))
                pipe.hmget(self._last_seen_key, list(user_ids))
                *device_sets, last_seen = await pipe.execute()
            checks: list[tuple[int, str]] = [
                (index, self._device_key(user_id, int(device)))
                for index, (user_id, devices) in enumerate(zip(user_ids, device_sets, strict=True))
                for device in devices
            ]
            online: set[int] = set()
            if checks:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for _, key in checks:
                        pipe.exists(key)
                    found = await pipe.execute()
                online = {index for (index, _), n in zip(checks, found, strict=True) if n}
        return [
            Presence(user_id, index in online, float(seen) if seen is not None else None)
            for index, (user_id, seen) in enumerate(zip(user_ids, last_seen, strict=True))
        ]

    # channels
    async def publish(self, channel: str, message: bytes) -> int:
        with translated("publish"):
            (count,) = await self._shared.run(
                lambda pipe: pipe.publish(self.prefix + channel, message)
            )
        return int(count)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> list[int]:
        """Every PUBLISH in one pipeline (one round trip); the counts in order."""
        if not messages:
            return []

        def fill(pipe: Any) -> None:
            for channel, message in messages:
                pipe.publish(self.prefix + channel, message)

        with translated("publish"):
            return [int(n) for n in await self._shared.run(fill)]

    async def subscribe(self, channel: str) -> RedisSubscription:
        """Subscribe on the store's shared Pub/Sub connection; once this returns, a
        ``publish`` to ``channel`` from any process counts this one."""
        hub = self._hub
        if hub is None or hub.dead:
            hub = await self._open_hub()
        return await hub.subscribe(self.prefix + channel)

    async def _open_hub(self) -> PubSubHub:
        """The live hub, connecting one if needed; concurrent callers share the attempt
        (and are all released together, so their SUBSCRIBEs go out as one batch)."""
        opening = self._hub_opening
        if opening is None:
            opening = self._hub_opening = asyncio.ensure_future(self._connect_hub())
            opening.add_done_callback(_retrieve)
        return await asyncio.shield(opening)

    async def _connect_hub(self) -> PubSubHub:
        try:
            if self._closed:
                raise Unavailable("redis: subscribe failed: the store is closed")
            hub = await PubSubHub.connect(self._redis.connection_pool, self.prefix, self._hub_died)
            if self._closed:
                await hub.close()
                raise Unavailable("redis: subscribe failed: the store is closed")
            self._hub = hub
            return hub
        finally:
            self._hub_opening = None

    def _hub_died(self, hub: PubSubHub) -> None:
        if self._hub is hub:
            self._hub = None

    # rate limits
    async def take_token(self, key: str, limit: Limit, now: float, cost: float = 1.0) -> Decision:
        idle = idle_expiry(limit)
        args = [repr(float(limit.rate)), str(limit.burst), repr(now), repr(float(cost))]
        # The key's own PX (real time) only reclaims memory: the script decides with
        # ``expires`` (caller time), like the in-memory engine; a second of slack keeps
        # the key at least that long.
        args += [repr(idle), str(_ms(idle) + 1000)]
        with translated("take_token"):
            allowed, wait = await self._shared_script(
                self._take_token, [f"{self.prefix}bucket:{key}"], args
            )
        return Decision(bool(allowed), float(wait))

    async def _shared_script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a registered script by its hash in the turn's shared pipeline."""
        try:
            (reply,) = await self._shared.run(
                lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args)
            )
        except NoScriptError:  # a restarted server: load the script, then run it
            reply = await script(keys=keys, args=args)
        return reply

    # TTL keys
    async def put_if_absent(self, key: str, value: bytes, ttl: float) -> bytes | None:
        with translated("put_if_absent"):
            # SET NX GET (Redis >= 7.0): sets unless present, answers the existing value.
            existing = await self._redis.set(self._kv(key), value, px=_ms(ttl), nx=True, get=True)
        return _as_bytes(existing)

    async def put_many_if_absent(
        self, items: Sequence[tuple[str, bytes, float]]
    ) -> list[bytes | None]:
        """One pipeline of SET NX GET (each atomic on its own); answers in order."""
        if not items:
            return []

        def fill(pipe: Any) -> None:
            for key, value, ttl in items:
                pipe.set(self._kv(key), value, px=_ms(ttl), nx=True, get=True)

        with translated("put_if_absent"):
            replies = await self._shared.run(fill)
        return [_as_bytes(reply) for reply in replies]

    async def get(self, key: str) -> bytes | None:
        with translated("get"):
            value = await self._redis.get(self._kv(key))
        return _as_bytes(value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One MGET (one round trip)."""
        if not keys:
            return []
        with translated("get"):
            values = await self._redis.mget([self._kv(key) for key in keys])
        return [_as_bytes(value) for value in values]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        with translated("set"):
            await self._redis.set(self._kv(key), value, px=_ms(ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Every SET in one pipeline (one round trip)."""
        if not items:
            return

        def fill(pipe: Any) -> None:
            for key, value, ttl in items:
                pipe.set(self._kv(key), value, px=_ms(ttl))

        with translated("set"):
            await self._shared.run(fill)

    async def delete(self, key: str) -> None:
        with translated("delete"):
            await self._redis.delete(self._kv(key))

    async def incr(self, key: str, ttl: float) -> int:
        with translated("incr"):
            return int(await self._incr(keys=[self._kv(key)], args=[_ms(ttl)]))

    async def ping(self) -> None:
        with translated("ping"):
            await self._redis.ping()

    async def close(self) -> None:
        """Ends every subscription, closes the Pub/Sub connection and the pool."""
        self._closed = True
        hub, self._hub = self._hub, None
        if hub is not None:
            await hub.close()
        with translated("close"):
            await self._redis.aclose()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared future's exception retrieved (its waiters may all be gone)."""
    if not future.cancelled():
        future.exception()
