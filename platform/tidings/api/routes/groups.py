"""/v1/groups: create, read, membership and roles."""

from __future__ import annotations

from fastapi import APIRouter, Response

from tidings.api.contract import errors
from tidings.api.deps import Me, Svc
from tidings.api.schemas import GroupCreate, GroupOut, MembersIn
from tidings.core.model import Group, Role

router = APIRouter(prefix="/v1/groups", tags=["groups"])


def _group(g: Group) -> GroupOut:
    return GroupOut(
        group_id=g.id,
        name=g.name,
        created_by=g.created_by,
        created_at=g.created_at,
        members={uid: role.value for uid, role in g.members.items()},
    )


@router.post("", status_code=201, responses=errors(404))
async def create(body: GroupCreate, me: Me, svc: Svc) -> GroupOut:
    return _group(await svc.groups.create(me, body.name, body.members))


@router.get("/{group_id}", responses=errors(403, 404))
async def get(group_id: str, me: Me, svc: Svc) -> GroupOut:
    return _group(await svc.groups.get(me, group_id))


@router.post("/{group_id}/members", responses=errors(403, 404, 409))
async def add_members(group_id: str, body: MembersIn, me: Me, svc: Svc) -> GroupOut:
    return _group(await svc.groups.add_members(me, group_id, body.user_ids))


@router.delete("/{group_id}/members/{user_id}", responses=errors(403, 404, 409))
async def remove_member(group_id: str, user_id: str, me: Me, svc: Svc) -> GroupOut:
    return _group(await svc.groups.remove_member(me, group_id, user_id))


@router.put("/{group_id}/admins/{user_id}", responses=errors(403, 404, 409))
async def promote(group_id: str, user_id: str, me: Me, svc: Svc) -> GroupOut:
    return _group(await svc.groups.set_role(me, group_id, user_id, Role.ADMIN))


@router.delete("/{group_id}/admins/{user_id}", responses=errors(403, 404, 409))
async def demote(group_id: str, user_id: str, me: Me, svc: Svc) -> GroupOut:
    return _group(await svc.groups.set_role(me, group_id, user_id, Role.MEMBER))


@router.post("/{group_id}/leave", status_code=204, responses=errors(403, 404))
async def leave(group_id: str, me: Me, svc: Svc) -> Response:
    await svc.groups.leave(me, group_id)
    return Response(status_code=204)
