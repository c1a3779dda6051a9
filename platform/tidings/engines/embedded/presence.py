"""PresenceStore in memory: presence, per-device channels, buckets, TTL keys.

Everything here is ephemeral by design (it lives in Redis in production); a restart
forgets who is online, which clients repair by reconnecting.

``publish`` counts receiving stores, not subscriptions, like the Redis engine (whose
store shares one Pub/Sub connection among all its subscriptions): 1 when this store has
a live subscription on the channel (each local subscriber still gets a copy), else 0.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence

from tidings.aio import Mailbox
from tidings.core.model import Presence
from tidings.core.ratelimit import Bucket, Decision, Limit, idle_expiry, take

_QUEUE_DEPTH = 1024


class MemorySubscription:
    def __init__(self, store: MemoryPresenceStore, channel: str) -> None:
        self._store, self.channel = store, channel
        # Channels carry wake-ups and ephemeral signals: when a consumer falls behind,
        # the oldest is the least useful and goes first.
        self._mailbox: Mailbox[bytes | None] = Mailbox(_QUEUE_DEPTH)

    def offer(self, message: bytes) -> None:
        self._mailbox.put(message)

    async def _iterate(self) -> AsyncIterator[bytes]:
        while (message := await self._mailbox.get()) is not None:
            yield message

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def close(self) -> None:
        subs = self._store._channels.get(self.channel)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self._store._channels[self.channel]
        self.offer_end()

    def offer_end(self) -> None:
        self._mailbox.put(None)


class MemoryPresenceStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._online: dict[tuple[str, int], float] = {}  # (user, device) -> expires at
        self._devices: dict[str, set[int]] = {}  # user -> devices in _online (an index)
        self._last_seen: dict[str, float] = {}
        self._channels: dict[str, set[MemorySubscription]] = {}
        self._values: dict[str, tuple[bytes, float]] = {}
        self._buckets: dict[str, tuple[Bucket, float]] = {}

    async def set_online(self, user_id: str, device_id: int, ttl: float) -> Presence:
        self._online[(user_id, device_id)] = self._clock() + ttl
        self._devices.setdefault(user_id, set()).add(device_id)
        return Presence(user_id, True, self._last_seen.get(user_id))

    async def set_offline(self, user_id: str, device_id: int, now: float) -> Presence:
        self._forget(user_id, device_id)
        self._last_seen[user_id] = now
        (presence,) = await self.get_presence([user_id])
        return presence

    def _forget(self, user_id: str, device_id: int) -> None:
        self._online.pop((user_id, device_id), None)
        devices = self._devices.get(user_id)
        if devices is not None:
            devices.discard(device_id)
            if not devices:
                del self._devices[user_id]

    async def get_presence(self, user_ids: Sequence[str]) -> list[Presence]:
        now = self._clock()
        return [
            Presence(
                u,
                any(self._online[(u, d)] > now for d in self._devices.get(u, ())),
                self._last_seen.get(u),
            )
            for u in user_ids
        ]

    async def reap_expired(self, now: float, limit: int) -> list[tuple[str, int]]:
        expired = sorted(
            ((expires, key) for key, expires in self._online.items() if expires <= now)
        )[:limit]
        for expires, key in expired:
            self._forget(*key)
            self._last_seen[key[0]] = max(expires, self._last_seen.get(key[0], expires))
        self._values = {k: v for k, v in self._values.items() if v[1] > now}
        self._buckets = {k: v for k, v in self._buckets.items() if v[1] > now}
        return [key for _, key in expired]

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> list[int]:
        return [await self.publish(channel, message) for channel, message in messages]

    async def publish(self, channel: str, message: bytes) -> int:
        subs = list(self._channels.get(channel, ()))
        for sub in subs:
            sub.offer(message)
        return 1 if subs else 0  # receivers are stores (processes), as on Redis

    async def subscribe(self, channel: str) -> MemorySubscription:
        sub = MemorySubscription(self, channel)
        self._channels.setdefault(channel, set()).add(sub)
        return sub

    async def take_token(self, key: str, limit: Limit, now: float, cost: float = 1.0) -> Decision:
        held = self._buckets.get(key)
        bucket = held[0] if held is not None and held[1] > now else None
        decision, updated = take(bucket, limit, now, cost)
        self._buckets[key] = (updated, now + idle_expiry(limit))
        if len(self._buckets) > 100_000:
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > now}
        return decision

    def _live(self, key: str) -> bytes | None:
        held = self._values.get(key)
        if held is None:
            return None
        if held[1] <= self._clock():
            del self._values[key]
            return None
        return held[0]

    async def put_if_absent(self, key: str, value: bytes, ttl: float) -> bytes | None:
        existing = self._live(key)
        if existing is None:
            self._values[key] = (value, self._clock() + ttl)
        return existing

    async def put_many_if_absent(
        self, items: Sequence[tuple[str, bytes, float]]
    ) -> list[bytes | None]:
        return [await self.put_if_absent(key, value, ttl) for key, value, ttl in items]

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._values[key] = (value, self._clock() + ttl)

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        for key, value, ttl in items:
            await self.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int:
        current = self._live(key)
        if current is None:
            self._values[key] = (b"1", self._clock() + ttl)
            return 1
        value = int(current) + 1
        self._values[key] = (str(value).encode(), self._values[key][1])
        return value

    async def ping(self) -> None:
        return None
