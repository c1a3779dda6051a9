"""Request and response models: strict types, unknown fields refused, limits stated."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tidings.core.limits import DEFAULT_LIMITS as L
from tidings.core.model import PresencePrivacy

# 96 KiB of ciphertext is 131072 base64 characters; the request-size limit bounds the sum.
B64_MAX = (L.envelope_bytes + 2) // 3 * 4
UserId = Annotated[str, Field(min_length=1, max_length=64)]
GroupId = Annotated[str, Field(min_length=1, max_length=64)]
Phone = Annotated[str, Field(min_length=8, max_length=16, examples=["+14155550123"])]
KeyB64 = Annotated[str, Field(min_length=44, max_length=48, description="base64 public key")]
KeyId = Annotated[int, Field(ge=0, le=2**31 - 1)]
RegistrationId = Annotated[int, Field(ge=1, le=16380)]
DeviceName = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# auth --------------------------------------------------------------------------------
class CodeRequest(Strict):
    phone: Phone


class CodeSent(Strict):
    expires_in: int


class RegisterRequest(Strict):
    phone: Phone
    code: str = Field(pattern=r"^[0-9]{6}$")
    device_name: DeviceName = "primary"
    registration_id: RegistrationId


class TokensOut(Strict):
    user_id: str
    device_id: int
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: Literal["bearer"] = "bearer"


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=128)


class LinkCodeOut(Strict):
    code: str
    expires_in: int


class LinkRequest(Strict):
    code: str = Field(min_length=1, max_length=64)
    device_name: DeviceName
    registration_id: RegistrationId


class DeviceOut(Strict):
    device_id: int
    name: str
    registration_id: int
    created_at: float
    primary: bool
    push_provider: Literal["fcm", "apns"] | None = Field(
        default=None, description="provider of the device's push token (never the token)"
    )


class DevicesOut(Strict):
    devices: list[DeviceOut]


# keys --------------------------------------------------------------------------------
class IdentityKeyIn(Strict):
    identity_key: KeyB64


class SignedPreKeyIn(Strict):
    key_id: KeyId
    public_key: KeyB64
    signature: str = Field(min_length=88, max_length=88, description="base64 Ed25519 signature")


class OneTimePreKeyIn(Strict):
    key_id: KeyId
    public_key: KeyB64


class OneTimePreKeysIn(Strict):
    prekeys: list[OneTimePreKeyIn] = Field(min_length=1, max_length=L.prekeys_per_upload)


class PreKeyCount(Strict):
    count: int


class BundleDevice(Strict):
    device_id: int
    registration_id: int
    signed_prekey: SignedPreKeyIn
    one_time_prekey: OneTimePreKeyIn | None


class BundleOut(Strict):
    user_id: str
    identity_key: str
    devices: list[BundleDevice]


# users -------------------------------------------------------------------------------
class LookupRequest(Strict):
    phones: list[Phone] = Field(min_length=1, max_length=L.discovery_batch)


class LookupOut(Strict):
    users: dict[str, str]


class ProfileOut(Strict):
    user_id: str
    display_name: str
    about: str


class MeOut(ProfileOut):
    phone: str
    presence_privacy: PresencePrivacy


class ProfileUpdate(Strict):
    display_name: str | None = Field(default=None, max_length=L.display_name_chars)
    about: str | None = Field(default=None, max_length=L.about_chars)
    presence_privacy: PresencePrivacy | None = None

    model_config = ConfigDict(extra="forbid", strict=False)  # enum from a JSON string


class ContactsIn(Strict):
    user_ids: list[UserId] = Field(min_length=1, max_length=L.discovery_batch)


class ContactsOut(Strict):
    contacts: list[str]


# groups ------------------------------------------------------------------------------
class GroupCreate(Strict):
    name: str = Field(min_length=1, max_length=L.group_name_chars)
    members: list[UserId] = Field(default_factory=list, max_length=L.group_members - 1)


class MembersIn(Strict):
    user_ids: list[UserId] = Field(min_length=1, max_length=L.group_members)


class GroupOut(Strict):
    group_id: str
    name: str
    created_by: str
    created_at: float
    members: dict[str, str]


# messages ----------------------------------------------------------------------------
class Target(Strict):
    user: UserId | None = None
    group: GroupId | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if (self.user is None) == (self.group is None):
            raise ValueError("'to' needs exactly one of 'user' or 'group'")
        return self


class DeviceCiphertext(Strict):
    device: int = Field(ge=1)
    registration_id: RegistrationId | None = None
    body: str = Field(min_length=1, max_length=B64_MAX, description="base64 ciphertext")


class SendBody(Strict):
    id: str = Field(min_length=1, max_length=64, description="client message id (retries reuse it)")
    to: Target
    ciphertexts: dict[UserId, list[DeviceCiphertext]] = Field(default_factory=dict)
    group_body: str | None = Field(default=None, min_length=1, max_length=B64_MAX)

    @model_validator(mode="after")
    def _one_form(self) -> SendBody:
        if self.group_body is not None and self.ciphertexts:
            raise ValueError("send either 'ciphertexts' or 'group_body', not both")
        if self.group_body is None and not self.ciphertexts:
            raise ValueError("'ciphertexts' must name at least one device")
        for user, entries in self.ciphertexts.items():
            if len({e.device for e in entries}) != len(entries):
                raise ValueError(f"device listed twice for user {user}")
        return self


class AcceptedOut(Strict):
    server_id: str
    timestamp: int
    duplicate: bool


class TypingBody(Strict):
    to: Target
    state: Literal["started", "stopped"]


class ReceiptBody(Strict):
    to: UserId
    kind: Literal["read"]
    message_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=L.receipt_batch
    )


class PresenceBody(Strict):
    users: list[UserId] = Field(min_length=1, max_length=L.presence_subscriptions)


# media -------------------------------------------------------------------------------
class MediaUploadIn(Strict):
    size: int = Field(ge=1, le=L.media_bytes)


class PresignedOut(Strict):
    url: str
    method: str
    headers: dict[str, str]
    expires_at: float


class MediaUploadOut(Strict):
    media_id: str
    upload: PresignedOut


class MediaDownloadOut(Strict):
    media_id: str
    download: PresignedOut


# push tokens -------------------------------------------------------------------------
FCM_TOKEN_MAX = 4096
"""FCM registration tokens are ~160-250 characters today; 4096 leaves room to grow."""
APNS_TOKEN_MIN, APNS_TOKEN_MAX = 64, 200
"""APNs device tokens are hex: 32 bytes (64 characters) today, at most 100 bytes."""


class PushTokenIn(Strict):
    """A device's push registration. Limits: FCM tokens 1-4096 characters of
    ``[A-Za-z0-9_:.-]``; APNs tokens 64-200 hex characters (even length)."""

    provider: Literal["fcm", "apns"]
    token: str = Field(min_length=1, max_length=FCM_TOKEN_MAX, pattern=r"^[A-Za-z0-9_:.\-]+$")
    alert: bool = Field(
        default=False,
        description="visible generic alert ('New message') instead of a silent wake-up",
    )

    @model_validator(mode="after")
    def _token_fits_provider(self) -> PushTokenIn:
        if self.provider == "apns":
            token = self.token
            if not APNS_TOKEN_MIN <= len(token) <= APNS_TOKEN_MAX or len(token) % 2:
                raise ValueError(
                    f"an APNs token is {APNS_TOKEN_MIN}-{APNS_TOKEN_MAX} hex characters, "
                    "even length"
                )
            if any(c not in "0123456789abcdefABCDEF" for c in token):
                raise ValueError("an APNs token is hexadecimal")
        return self
