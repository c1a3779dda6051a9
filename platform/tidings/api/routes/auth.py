"""/v1/auth and /v1/devices: codes, tokens, device linking."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response

from tidings.api.contract import errors
from tidings.api.deps import ClientAddress, Me, Svc
from tidings.api.schemas import (
    LINK_ADDRESS,
    CodeRequest,
    CodeSent,
    DeviceOut,
    DevicesOut,
    LinkCodeOut,
    LinkRequest,
    ProvisioningIn,
    ProvisioningOut,
    PushTokenIn,
    RefreshRequest,
    RegisterRequest,
    TokensOut,
)
from tidings.core.push import Provider
from tidings.services.auth import Tokens

router = APIRouter(prefix="/v1", tags=["auth"])


def _tokens(t: Tokens) -> TokensOut:
    return TokensOut(
        user_id=t.user_id,
        device_id=t.device_id,
        access_token=t.access_token,
        refresh_token=t.refresh_token,
        expires_in=t.expires_in,
    )


@router.post("/auth/code", status_code=202, responses=errors(429))
async def request_code(body: CodeRequest, svc: Svc, address: ClientAddress) -> CodeSent:
    """Send a one-time code to a phone number (rate limited per number, per client
    address and per block of numbers)."""
    return CodeSent(expires_in=await svc.auth.request_code(body.phone, address))


@router.post("/auth/register", responses=errors(401, 429))
async def register(body: RegisterRequest, svc: Svc, address: ClientAddress) -> TokensOut:
    """Verify the code; creates the account if new and (re)registers the primary device
    (attempts rate limited per client address)."""
    return _tokens(
        await svc.auth.register(
            body.phone, body.code, body.device_name, body.registration_id, address
        )
    )


@router.post("/auth/refresh", responses=errors(401))
async def refresh(body: RefreshRequest, svc: Svc) -> TokensOut:
    return _tokens(await svc.auth.refresh(body.refresh_token))


@router.post("/auth/logout", status_code=204)
async def logout(me: Me, svc: Svc) -> Response:
    """Revoke every token of the calling device and close its socket."""
    await svc.auth.logout(me)
    return Response(status_code=204)


@router.post("/devices/link-code", responses=errors(403))
async def link_code(me: Me, svc: Svc) -> LinkCodeOut:
    """(primary only) A short-lived code a new device trades for its own tokens."""
    code, ttl = await svc.auth.create_link_code(me)
    return LinkCodeOut(code=code, expires_in=ttl)


@router.post("/devices/link", responses=errors(401, 429))
async def link(body: LinkRequest, svc: Svc) -> TokensOut:
    return _tokens(await svc.auth.link_device(body.code, body.device_name, body.registration_id))


LinkAddress = Annotated[str, Path(pattern=LINK_ADDRESS, description="the link request's key")]


@router.put("/devices/provisioning/{address}", status_code=204, responses=errors(403, 409))
async def leave_provisioning(
    address: LinkAddress, body: ProvisioningIn, me: Me, svc: Svc
) -> Response:
    """(primary only) Approve a new device: leave the provisioning blob sealed to its
    link request for it to fetch (kept for the link code's lifetime, first one wins)."""
    await svc.auth.leave_provisioning(me, address, body.blob)
    return Response(status_code=204)


@router.get("/devices/provisioning/{address}", responses=errors(404))
async def take_provisioning(address: LinkAddress, svc: Svc) -> ProvisioningOut:
    """The new device polls here (no token yet) until its blob was left: handed out
    once, then gone. ``404`` while nothing was approved."""
    return ProvisioningOut(blob=await svc.auth.take_provisioning(address))


@router.get("/devices")
async def devices(me: Me, svc: Svc) -> DevicesOut:
    found = await svc.auth.list_devices(me)
    providers = await svc.push_tokens.providers(me)
    return DevicesOut(
        devices=[
            DeviceOut(
                device_id=d.device_id,
                name=d.name,
                registration_id=d.registration_id,
                created_at=d.created_at,
                primary=d.is_primary,
                push_provider=providers[d.device_id].value if d.device_id in providers else None,
            )
            for d in found
        ]
    )


@router.delete("/devices/{device_id:int}", status_code=204, responses=errors(403, 404))
async def unlink(device_id: int, me: Me, svc: Svc) -> Response:
    await svc.auth.unlink(me, device_id)
    return Response(status_code=204)


@router.put("/devices/{device_id:int}/push", status_code=204, responses=errors(403, 404))
async def set_push_token(
    device_id: int, body: Annotated[PushTokenIn, Body()], me: Me, svc: Svc
) -> Response:
    """Register the calling device's push token (a device sets only its own). A token
    already registered by another device moves here."""
    await svc.push_tokens.set(me, device_id, Provider(body.provider), body.token, body.alert)
    return Response(status_code=204)


@router.delete("/devices/{device_id:int}/push", status_code=204, responses=errors(403, 404))
async def remove_push_token(device_id: int, me: Me, svc: Svc) -> Response:
    """Stop pushes to the calling device."""
    await svc.push_tokens.remove(me, device_id)
    return Response(status_code=204)
