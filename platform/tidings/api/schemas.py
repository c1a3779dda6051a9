"""Request and response models: strict types, unknown fields refused, limits stated."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from tidings.core.limits import DEFAULT_LIMITS as L
from tidings.core.model import PresencePrivacy
from tidings.core.validation import E164

# 96 KiB of ciphertext is 131072 base64 characters; the request-size limit bounds the sum.
B64_MAX = (L.envelope_bytes + 2) // 3 * 4
B64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
"""Standard base64 with padding, as ``core.validation.b64decode`` reads it."""
X25519_B64 = r"^(?:[A-Za-z0-9+/]{43}=|B[Q-Za-f][A-Za-z0-9+/]{42})$"
"""32 bytes, or 33 starting with the 0x05 type byte: ``core.validation.public_key``."""
DISPLAY_TEXT = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029"
    "\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]*$"
)
"""Names shown to other users: ``core.validation.display_text`` as a JSON Schema pattern
(the server checks it in code; the pattern tells clients and fuzzers)."""


def checked_in_code(pattern: str) -> dict[str, Any]:
    """A pattern for the schema only: the server checks the value in code, where the
    refusal (``400 invalid_input``) says what is wrong better than a regex would."""
    return {"json_schema_extra": {"pattern": pattern}}


def _int_from_json(value: object) -> object:
    """JSON Schema counts ``5.0`` as an integer; strict pydantic would not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WHOLE = BeforeValidator(_int_from_json)
"""Goes after an integer's bounds (``Field(ge=...)``), or the schema loses them."""


UserId = Annotated[str, Field(min_length=1, max_length=64)]
GroupId = Annotated[str, Field(min_length=1, max_length=64)]
Phone = Annotated[
    str,
    Field(min_length=8, max_length=16, examples=["+14155550123"], **checked_in_code(E164.pattern)),
]
KeyB64 = Annotated[
    str,
    Field(
        min_length=44,
        max_length=48,
        description="base64 X25519 key",
        **checked_in_code(X25519_B64),
    ),
]
IdentityKeyB64 = Annotated[
    str,
    Field(
        min_length=44,
        max_length=48,
        description="base64 of the 32-byte Ed25519 public key",
        **checked_in_code(r"^[A-Za-z0-9+/]{43}=$"),
    ),
]
KeyId = Annotated[int, Field(ge=0, le=2**31 - 1), WHOLE]
RegistrationId = Annotated[int, Field(ge=1, le=16380), WHOLE]
DeviceName = Annotated[
    str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": DISPLAY_TEXT})
]


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


LINK_ADDRESS = r"^[A-Za-z0-9_-]{43}$"
"""A link request's X25519 public key, base64url without padding (the part after
``tidings-link-request:1:``)."""


class ProvisioningIn(Strict):
    blob: str = Field(
        min_length=1,
        max_length=L.provisioning_blob_chars,
        pattern=r"^tidings-provision:1:[A-Za-z0-9_-]+$",
    )


class ProvisioningOut(Strict):
    blob: str


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
    identity_key: IdentityKeyB64


class SignedPreKeyIn(Strict):
    key_id: KeyId
    public_key: KeyB64
    signature: str = Field(
        min_length=88,
        max_length=88,
        **checked_in_code(r"^[A-Za-z0-9+/]{86}==$"),
        description="base64 Ed25519 signature (64 bytes) over the decoded `public_key` bytes",
    )


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
    display_name: str | None = Field(
        default=None, max_length=L.display_name_chars, json_schema_extra={"pattern": DISPLAY_TEXT}
    )
    about: str | None = Field(
        default=None, max_length=L.about_chars, json_schema_extra={"pattern": DISPLAY_TEXT}
    )
    presence_privacy: PresencePrivacy | None = None

    model_config = ConfigDict(extra="forbid", strict=False)  # enum from a JSON string


class ContactsIn(Strict):
    user_ids: list[UserId] = Field(min_length=1, max_length=L.discovery_batch)


class ContactsOut(Strict):
    contacts: list[str]


# groups ------------------------------------------------------------------------------
class GroupCreate(Strict):
    name: str = Field(
        min_length=1, max_length=L.group_name_chars, json_schema_extra={"pattern": DISPLAY_TEXT}
    )
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
class ToUser(Strict):
    user: UserId

    @property
    def group(self) -> None:
        return None


class ToGroup(Strict):
    group: GroupId

    @property
    def user(self) -> None:
        return None


Target = ToUser | ToGroup
"""``{"user": ...}`` or ``{"group": ...}``: exactly one (the other key is refused)."""


class DeviceCiphertext(Strict):
    device: Annotated[int, Field(ge=1), WHOLE]
    registration_id: RegistrationId | None = None
    body: str = Field(
        min_length=1, max_length=B64_MAX, description="base64 ciphertext", **checked_in_code(B64)
    )


_GROUP_BODY = {"properties": {"group_body": {"type": "string"}}}
ONE_FORM: dict[str, Any] = {
    "oneOf": [
        {"required": ["ciphertexts"], "not": {"required": ["group_body"], **_GROUP_BODY}},
        {
            "required": ["group_body"],
            "not": {"required": ["ciphertexts"]},
            "properties": {"to": {"required": ["group"]}, "group_body": {"type": "string"}},
        },
    ]
}
"""``ciphertexts`` (one per device) or, to a group only, one ``group_body`` (a
``"group_body": null`` counts as absent)."""


class SendBody(Strict):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=ONE_FORM)

    id: str = Field(min_length=1, max_length=64, description="client message id (retries reuse it)")
    to: Target
    ciphertexts: dict[UserId, list[DeviceCiphertext]] = Field(default_factory=dict, min_length=1)
    group_body: str | None = Field(
        default=None, min_length=1, max_length=B64_MAX, **checked_in_code(B64)
    )

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
    size: Annotated[int, Field(ge=1, le=L.media_bytes), WHOLE]


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


class FcmTokenIn(Strict):
    """An FCM registration token: 1-4096 characters of ``[A-Za-z0-9_:.-]``."""

    provider: Literal["fcm"]
    token: str = Field(min_length=1, max_length=FCM_TOKEN_MAX, pattern=r"^[A-Za-z0-9_:.\-]+$")
    alert: bool = Field(
        default=False,
        description="visible generic alert ('New message') instead of a silent wake-up",
    )


class ApnsTokenIn(Strict):
    """An APNs device token: 64-200 hex characters, even length."""

    provider: Literal["apns"]
    token: str = Field(
        min_length=APNS_TOKEN_MIN,
        max_length=APNS_TOKEN_MAX,
        pattern=r"^(?:[0-9a-fA-F]{2})+$",
    )
    alert: bool = Field(
        default=False,
        description="visible generic alert ('New message') instead of a silent wake-up",
    )


PushTokenIn = Annotated[FcmTokenIn | ApnsTokenIn, Field(discriminator="provider")]
"""A device's push registration; ``provider`` says which token it is."""


# regions -------------------------------------------------------------------------------
class RegionOut(Strict):
    name: str
    gateway: str | None = Field(
        description="Base URL of the region's gateway; null when the shard map names none "
        "(keep the gateway in use)"
    )
    home_shards: int = Field(description="Shards this region is home to")
    owned_shards: int = Field(
        description="Shards it serves now (0 after a failover moved its own away)"
    )
    health: str | None = Field(
        default=None,
        description="As the answering region's operator last judged it: Healthy, Suspect, "
        "Failed (avoid it), OperatorDown (its data plane serves) or Unknown; Healthy for "
        "the answering region itself; null when not known",
    )


class RegionsOut(Strict):
    here: str = Field(description="The region of the gateway that answered")
    regions: list[RegionOut]


class PlacementOut(Strict):
    here: str = Field(description="The region of the gateway that answered")
    home_region: str
    owner_region: str = Field(
        description="The region that serves this account now: connect to its gateway"
    )
    gateway: str | None = Field(
        description="The owner region's gateway; null when the shard map names none"
    )
