"""The interfaces services depend on. Engines implement them; services never see engines.

Semantics every engine must keep (the port contract suite in ``tests/`` checks them):

- ``EventBus.produce`` returns only once the records are durable; records with the same
  key land in the same partition, in produce order. A consumer group sees each
  partition's records in order; ``commit`` marks records processed, and after a crash
  consumption resumes after the last commit (at-least-once).
- ``MessageStore.append`` is idempotent on ``server_id`` per device; ``fetch`` returns
  an inbox in append order; acked items are never fetched again.
- ``UserStore.claim_one_time_prekey`` hands each one-time prekey out exactly once, even
  under concurrent calls.
- ``UserStore.set_push_token`` keeps a token on one device: registering it for another
  device moves it.
- ``Channels.publish`` returns how many live subscribers received the message (0
  means the device is not connected anywhere); ``KeyValues.put_if_absent`` is atomic.

Presence, channels, rate limits and key-values are four ports because they are four
concerns; one engine (memory, or Redis) implements all four, and the hot path batches
against the ``*_many`` calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tidings.core.leases import LeaseOp, LeaseRow
from tidings.core.model import (
    AuthSession,
    Device,
    Group,
    InboxItem,
    OneTimePreKey,
    Presence,
    PresencePrivacy,
    PushToken,
    Role,
    SignedPreKey,
    User,
)
from tidings.core.push import PushMessage, PushResult
from tidings.core.ratelimit import Decision, Limit


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes


class Consumer(Protocol):
    async def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Next records of the partitions assigned to this member, oldest first."""

    async def commit(self, records: Sequence[Record]) -> None:
        """Mark these records (and everything before them in their partitions) processed."""

    async def close(self) -> None: ...


class EventBus(Protocol):
    async def ensure_topic(self, topic: str, partitions: int) -> None: ...

    async def produce(self, topic: str, records: Sequence[tuple[str, bytes]]) -> None:
        """Append (key, value) records; returns once they are durable."""

    def consumer(self, topic: str, group: str) -> Consumer: ...

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the bus answers."""

    async def close(self) -> None: ...


class Accounts(Protocol):
    """Users and their profiles."""

    async def create_user(self, user: User) -> tuple[User, bool]:
        """Create ``user`` unless its phone is taken; returns (the phone's user, created)."""

    async def get_user(self, user_id: str) -> User | None: ...
    async def users_by_phone(self, phones: Sequence[str]) -> dict[str, User]: ...
    async def update_user(self, user: User) -> None: ...


class Devices(Protocol):
    """The devices of each user (device 1 is the primary)."""

    async def add_device(self, device: Device, max_devices: int) -> Device:
        """Store ``device`` with the next free device id (raises ``LimitExceeded``)."""

    async def put_primary_device(self, device: Device) -> None:
        """Create or replace device 1, dropping its old keys."""

    async def list_devices(self, user_id: str) -> list[Device]: ...
    async def devices_of(self, user_ids: Sequence[str]) -> list[Device]: ...
    async def remove_device(self, user_id: str, device_id: int) -> bool:
        """Remove a linked device with its keys, sessions and push token."""


class PushTokens(Protocol):
    """Each device's FCM/APNs token."""

    async def set_push_token(self, user_id: str, device_id: int, token: PushToken) -> None:
        """Register the device's token; a device holding the same token loses it."""

    async def get_push_token(self, user_id: str, device_id: int) -> PushToken | None: ...
    async def push_tokens_of(self, user_id: str) -> dict[int, PushToken]:
        """Tokens of every device of the user, by device id."""

    async def remove_push_token(
        self, user_id: str, device_id: int, token: str | None = None
    ) -> bool:
        """Drop the device's token (only if it is still ``token``, when given)."""


class Sessions(Protocol):
    """Bearer sessions (access and refresh tokens), by the hash of their token."""

    async def put_session(self, session: AuthSession) -> None: ...
    async def get_session(self, token_hash: str) -> AuthSession | None: ...
    async def delete_session(self, token_hash: str) -> None: ...
    async def delete_device_sessions(self, user_id: str, device_id: int) -> None: ...


class PublicKeys(Protocol):
    """Identity keys and prekeys that others fetch to start sessions."""

    async def set_identity_key(self, user_id: str, key: bytes) -> None: ...
    async def get_identity_key(self, user_id: str) -> bytes | None: ...
    async def set_signed_prekey(self, user_id: str, device_id: int, key: SignedPreKey) -> None: ...
    async def get_signed_prekey(self, user_id: str, device_id: int) -> SignedPreKey | None: ...
    async def add_one_time_prekeys(
        self, user_id: str, device_id: int, keys: Sequence[OneTimePreKey], max_stored: int
    ) -> int:
        """Store keys (an existing key id is replaced); returns the count now stored."""

    async def count_one_time_prekeys(self, user_id: str, device_id: int) -> int: ...
    async def claim_one_time_prekey(self, user_id: str, device_id: int) -> OneTimePreKey | None:
        """Remove and return one key; never the same key to two callers."""


class Contacts(Protocol):
    async def add_contacts(
        self, user_id: str, contact_ids: Sequence[str], max_contacts: int
    ) -> None: ...
    async def remove_contact(self, user_id: str, contact_id: str) -> None: ...
    async def list_contacts(self, user_id: str) -> list[str]: ...
    async def has_contact(self, user_id: str, contact_id: str) -> bool: ...


class Groups(Protocol):
    async def create_group(self, group: Group) -> None: ...
    async def get_group(self, group_id: str) -> Group | None: ...
    async def set_member(self, group_id: str, user_id: str, role: Role) -> None: ...
    async def remove_member(self, group_id: str, user_id: str) -> None: ...


class UserStore(Accounts, Devices, PushTokens, Sessions, PublicKeys, Contacts, Groups, Protocol):
    """Everything about users one engine keeps together (a user's removal or a device's
    replacement spans several parts). Services use the part they need, through the
    ``Context`` properties of the same names."""

    async def ping(self) -> None: ...


class MessageStore(Protocol):
    async def append(self, items: Sequence[tuple[str, int, str, bytes]]) -> int:
        """Store (user, device, server id, envelope) rows; returns how many were new."""

    async def fetch(
        self, user_id: str, device_id: int, after: str | None, limit: int
    ) -> list[InboxItem]:
        """Unacked items after cursor ``after`` (from the start when None), in order."""

    async def ack(
        self,
        user_id: str,
        device_id: int,
        server_ids: Sequence[str],
        cursors: Mapping[str, str] | None = None,
    ) -> list[InboxItem]:
        """Mark items acked; returns those that were pending (for delivery receipts).

        ``cursors`` (server id -> the cursor ``fetch`` gave it) lets an engine find the
        rows without looking the ids up; ids without one are looked up."""

    async def pending(self, user_id: str, device_id: int) -> int: ...
    async def purge_device(self, user_id: str, device_id: int) -> None: ...
    async def ping(self) -> None: ...


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def close(self) -> None: ...


class PresenceStore(Protocol):
    """Who is online, and since when they were last seen."""

    async def set_online(self, user_id: str, device_id: int, ttl: float) -> Presence:
        """Mark the device online for ``ttl`` seconds; the user's presence after that (in
        the same round trip: a connect announces it without reading again)."""

    async def set_offline(self, user_id: str, device_id: int, now: float) -> Presence:
        """Mark the device offline, the user last seen ``now``; the user's presence after
        that (online while another of their devices is)."""

    async def get_presence(self, user_ids: Sequence[str]) -> list[Presence]: ...

    async def reap_expired(self, now: float, limit: int) -> list[tuple[str, int]]:
        """Devices whose online TTL ran out by ``now`` without a ``set_offline`` (their
        gateway died), each handed to exactly one caller; the user's last-seen becomes
        the expiry time. Also forgets other expired state the engine keeps itself."""

    async def ping(self) -> None: ...


class Channels(Protocol):
    """Fire-and-forget messages to whoever listens now (wake-ups, typing, presence)."""

    async def publish(self, channel: str, message: bytes) -> int:
        """Send to current subscribers; returns how many receiving processes (stores)
        got it, not how many sockets or subscriptions: a process with several local
        subscribers of ``channel`` counts once. 0 still means nobody, in any process,
        is subscribed."""

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> list[int]:
        """``publish`` each (channel, message) in one go; the counts in the same order."""

    async def subscribe(self, channel: str) -> Subscription: ...


class RateLimiter(Protocol):
    """Token buckets, shared by every process of a region."""

    async def take_token(
        self, key: str, limit: Limit, now: float, cost: float = 1.0
    ) -> Decision: ...


class KeyValues(Protocol):
    """Small values with a TTL: send dedupe state, one-time-code attempts, link codes,
    the records of who wrote to whom (``core.relationships``)."""

    async def put_if_absent(self, key: str, value: bytes, ttl: float) -> bytes | None:
        """Atomically set ``key`` unless present; returns the existing value, else None."""

    async def put_many_if_absent(
        self, items: Sequence[tuple[str, bytes, float]]
    ) -> list[bytes | None]:
        """``put_if_absent`` each (key, value, ttl) in one go; answers in the same order."""

    async def get(self, key: str) -> bytes | None: ...
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``get`` each key in one go; answers in the same order."""

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...
    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """``set`` each (key, value, ttl) in one go."""

    async def delete(self, key: str) -> None: ...
    async def incr(self, key: str, ttl: float) -> int:
        """Increment a counter (created at 1 with ``ttl``); returns the new value."""


class ShardLeases(Protocol):
    """Shard leases (``core.leases``): every write a conditional one, decided by a
    majority of all the datacenters' replicas, so two regions never both hold one."""

    async def read(self, shard: str) -> LeaseRow | None:
        """The row as a majority has it (in-flight writes settled first)."""

    async def write(self, op: LeaseOp) -> tuple[bool, LeaseRow | None]:
        """Apply ``op`` if its condition holds: (applied, the row as it is now)."""


@dataclass(frozen=True)
class PresignedUrl:
    url: str
    method: str
    expires_at: float
    headers: dict[str, str]


class BlobStore(Protocol):
    async def presign_upload(self, key: str, size: int, expires_in: int) -> PresignedUrl: ...
    async def presign_download(self, key: str, expires_in: int) -> PresignedUrl: ...
    async def size_of(self, key: str) -> int | None:
        """Size of the stored blob, or None when nothing was uploaded."""

    async def ping(self) -> None: ...


class AnalyticsStore(Protocol):
    """Daily aggregates of analytics counters (metadata only)."""

    async def add(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add to the (day, counter name) totals."""

    async def day(self, day: str) -> dict[str, int]:
        """Every counter of ``day`` (``YYYY-MM-DD``)."""

    async def ping(self) -> None: ...


class PushSender(Protocol):
    """One provider client (FCM HTTP v1 or APNs over HTTP/2)."""

    async def send(self, message: PushMessage) -> PushResult:
        """Deliver one push; errors the provider documents come back as outcomes."""

    async def close(self) -> None: ...


class OtpSender(Protocol):
    async def send(self, phone: str, code: str) -> None:
        """Deliver a one-time code (SMS gateway in production)."""


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds since the epoch."""


__all__ = [
    "AnalyticsStore",
    "BlobStore",
    "Channels",
    "Clock",
    "Consumer",
    "EventBus",
    "KeyValues",
    "MessageStore",
    "OtpSender",
    "Presence",
    "PresencePrivacy",
    "PresenceStore",
    "PresignedUrl",
    "PushSender",
    "RateLimiter",
    "Record",
    "ShardLeases",
    "Subscription",
    "UserStore",
]
