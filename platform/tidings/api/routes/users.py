"""/v1/users, /v1/directory, /v1/contacts: discovery, profiles and contacts."""

from __future__ import annotations

from fastapi import APIRouter, Response

from tidings.api.contract import errors
from tidings.api.deps import Me, Svc
from tidings.api.schemas import (
    ContactsIn,
    ContactsOut,
    LookupOut,
    LookupRequest,
    MeOut,
    ProfileOut,
    ProfileUpdate,
)
from tidings.core.model import User

router = APIRouter(prefix="/v1", tags=["users"])


def _me(user: User) -> MeOut:
    return MeOut(
        user_id=user.id,
        display_name=user.display_name,
        about=user.about,
        phone=user.phone,
        presence_privacy=user.presence_privacy,
    )


@router.post("/directory/lookup", responses=errors(429))
async def lookup(body: LookupRequest, me: Me, svc: Svc) -> LookupOut:
    """Which of these numbers are registered (rate limited)."""
    return LookupOut(users=await svc.users.discover(me, body.phones))


@router.get("/users/me", responses=errors(404))
async def get_me(me: Me, svc: Svc) -> MeOut:
    return _me(await svc.users.get(me.user_id))


@router.patch("/users/me", responses=errors(404))
async def patch_me(body: ProfileUpdate, me: Me, svc: Svc) -> MeOut:
    return _me(
        await svc.users.update_profile(me, body.display_name, body.about, body.presence_privacy)
    )


@router.get("/users/{user_id}", responses=errors(404))
async def profile(user_id: str, me: Me, svc: Svc) -> ProfileOut:
    user = await svc.users.get(user_id)
    return ProfileOut(user_id=user.id, display_name=user.display_name, about=user.about)


@router.get("/contacts")
async def contacts(me: Me, svc: Svc) -> ContactsOut:
    return ContactsOut(contacts=await svc.users.contacts(me))


@router.put("/contacts", responses=errors(404))
async def add_contacts(body: ContactsIn, me: Me, svc: Svc) -> ContactsOut:
    return ContactsOut(contacts=await svc.users.add_contacts(me, body.user_ids))


@router.delete("/contacts/{user_id}", status_code=204, responses=errors(404))
async def remove_contact(user_id: str, me: Me, svc: Svc) -> Response:
    await svc.users.remove_contact(me, user_id)
    return Response(status_code=204)
