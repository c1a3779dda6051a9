"""/v1/messages and /v1/media: the REST send and presigned media URLs."""

from __future__ import annotations

from fastapi import APIRouter

from tidings.api.deps import Me, Svc
from tidings.api.schemas import (
    AcceptedOut,
    MediaDownloadOut,
    MediaUploadIn,
    MediaUploadOut,
    PresignedOut,
    SendBody,
)
from tidings.core import validation
from tidings.ports import PresignedUrl
from tidings.services.router import Outgoing

router = APIRouter(prefix="/v1", tags=["messages"])


def outgoing(body: SendBody) -> Outgoing:
    """The validated edge model as the router's input (ciphertexts must be base64)."""
    ciphertexts: dict[str, dict[int, tuple[int | None, str]]] = {}
    for user, entries in body.ciphertexts.items():
        for e in entries:
            validation.b64decode(e.body, what=f"ciphertext for {user}/{e.device}")
            ciphertexts.setdefault(user, {})[e.device] = (e.registration_id, e.body)
    if body.group_body is not None:
        validation.b64decode(body.group_body, what="group_body")
    return Outgoing(body.id, body.to.user, body.to.group, ciphertexts, body.group_body)


@router.post("/messages")
async def send(body: SendBody, me: Me, svc: Svc) -> AcceptedOut:
    """Accepted means durable: the envelope is on the bus and will be delivered."""
    accepted = await svc.router.send(me, outgoing(body))
    return AcceptedOut(
        server_id=accepted.server_id, timestamp=accepted.timestamp, duplicate=accepted.duplicate
    )


def _presigned(url: PresignedUrl) -> PresignedOut:
    return PresignedOut(
        url=url.url, method=url.method, headers=url.headers, expires_at=url.expires_at
    )


@router.post("/media", status_code=201)
async def media_upload(body: MediaUploadIn, me: Me, svc: Svc) -> MediaUploadOut:
    """A URL to PUT exactly ``size`` bytes of encrypted media to, before it expires."""
    media_id, url = await svc.media.upload(me, body.size)
    return MediaUploadOut(media_id=media_id, upload=_presigned(url))


@router.get("/media/{media_id}")
async def media_download(media_id: str, me: Me, svc: Svc) -> MediaDownloadOut:
    return MediaDownloadOut(
        media_id=media_id, download=_presigned(await svc.media.download(me, media_id))
    )
