"""/v1/keys: identity key, signed and one-time prekeys, bundles."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Path, Response

from tidings.api.contract import errors
from tidings.api.deps import Me, Svc
from tidings.api.schemas import (
    BundleDevice,
    BundleOut,
    IdentityKeyIn,
    OneTimePreKeyIn,
    OneTimePreKeysIn,
    PreKeyCount,
    SignedPreKeyIn,
)
from tidings.core import validation
from tidings.core.model import OneTimePreKey, PreKeyBundle, SignedPreKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.put("/identity", status_code=204, responses=errors(403))
async def put_identity(body: IdentityKeyIn, me: Me, svc: Svc) -> Response:
    """(primary only) The account's Ed25519 identity public key."""
    key = validation.b64decode(body.identity_key, what="identity_key")
    await svc.keys.set_identity_key(me, key)
    return Response(status_code=204)


@router.put("/signed", status_code=204, responses=errors(409))
async def put_signed(body: SignedPreKeyIn, me: Me, svc: Svc) -> Response:
    """This device's signed prekey; the signature must verify against the identity key."""
    key = SignedPreKey(
        body.key_id,
        validation.public_key(body.public_key, what="public_key"),
        validation.b64decode(body.signature, what="signature"),
    )
    await svc.keys.set_signed_prekey(me, key)
    return Response(status_code=204)


@router.post("/one-time")
async def post_one_time(body: OneTimePreKeysIn, me: Me, svc: Svc) -> PreKeyCount:
    keys = [
        OneTimePreKey(k.key_id, validation.public_key(k.public_key, what=f"prekey {k.key_id}"))
        for k in body.prekeys
    ]
    return PreKeyCount(count=await svc.keys.add_one_time_prekeys(me, keys))


@router.get("/count")
async def count(me: Me, svc: Svc) -> PreKeyCount:
    """One-time prekeys this device still has on the server."""
    return PreKeyCount(count=await svc.keys.count(me))


def _bundle(user_id: str, bundles: list[PreKeyBundle]) -> BundleOut:
    b64 = validation.b64encode
    return BundleOut(
        user_id=user_id,
        identity_key=b64(bundles[0].identity_key),
        devices=[
            BundleDevice(
                device_id=b.device_id,
                registration_id=b.registration_id,
                signed_prekey=SignedPreKeyIn(
                    key_id=b.signed_prekey.key_id,
                    public_key=b64(b.signed_prekey.public_key),
                    signature=b64(b.signed_prekey.signature),
                ),
                one_time_prekey=None
                if b.one_time_prekey is None
                else OneTimePreKeyIn(
                    key_id=b.one_time_prekey.key_id, public_key=b64(b.one_time_prekey.public_key)
                ),
            )
            for b in bundles
        ],
    )


# User ids are UUIDs: the convertor keeps /v1/keys/identity and the other key paths
# from also naming a user, so each path has exactly the methods documented for it.
@router.get("/{user_id:uuid}", responses=errors(404, 429))
async def bundles(user_id: UUID, me: Me, svc: Svc) -> BundleOut:
    """A bundle per device of ``user_id``; each claims one one-time prekey."""
    return _bundle(str(user_id), await svc.keys.bundles(me, str(user_id)))


@router.get("/{user_id:uuid}/{device_id:int}", responses=errors(404, 429))
async def bundle(user_id: UUID, me: Me, svc: Svc, device_id: int = Path(ge=1)) -> BundleOut:
    return _bundle(str(user_id), await svc.keys.bundles(me, str(user_id), device_id))
