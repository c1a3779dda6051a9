"""Domain values: frozen dataclasses shared by services, ports and engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tidings.core.push import Provider

PRIMARY_DEVICE = 1


class PresencePrivacy(StrEnum):
    EVERYONE = "everyone"
    CONTACTS = "contacts"
    NOBODY = "nobody"


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True)
class User:
    id: str
    phone: str
    created_at: float
    display_name: str = ""
    about: str = ""
    presence_privacy: PresencePrivacy = PresencePrivacy.CONTACTS


@dataclass(frozen=True)
class Device:
    user_id: str
    device_id: int
    name: str
    registration_id: int
    created_at: float

    @property
    def is_primary(self) -> bool:
        return self.device_id == PRIMARY_DEVICE


@dataclass(frozen=True)
class PushToken:
    """A device's push registration. A token belongs to at most one device."""

    provider: Provider
    token: str
    alert: bool = False
    """The user chose visible (generic) alerts over silent wake-ups."""
    updated_at: float = 0.0


@dataclass(frozen=True)
class SignedPreKey:
    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True)
class OneTimePreKey:
    key_id: int
    public_key: bytes


@dataclass(frozen=True)
class PreKeyBundle:
    """What a sender needs to start an X3DH session with one device."""

    device_id: int
    registration_id: int
    identity_key: bytes
    signed_prekey: SignedPreKey
    one_time_prekey: OneTimePreKey | None


@dataclass(frozen=True)
class AuthSession:
    """A hashed bearer token bound to one device."""

    token_hash: str
    kind: str  # "access" | "refresh"
    user_id: str
    device_id: int
    expires_at: float


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    created_by: str
    created_at: float
    members: dict[str, Role] = field(default_factory=dict)

    def is_member(self, user_id: str) -> bool:
        return user_id in self.members

    def is_admin(self, user_id: str) -> bool:
        return self.members.get(user_id) == Role.ADMIN


@dataclass(frozen=True)
class Presence:
    user_id: str
    online: bool
    last_seen: float | None


@dataclass(frozen=True)
class InboxItem:
    """An envelope waiting in one device's inbox; ``cursor`` orders the inbox."""

    cursor: str
    server_id: str
    envelope: bytes
