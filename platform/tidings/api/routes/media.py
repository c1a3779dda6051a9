"""/v1/media: presigned URLs for encrypted media blobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from tidings.api.contract import errors
from tidings.api.deps import Me, Svc
from tidings.api.schemas import MediaDownloadOut, MediaUploadIn, MediaUploadOut, PresignedOut
from tidings.ports import PresignedUrl

router = APIRouter(prefix="/v1", tags=["media"])

MediaId = Annotated[
    str,
    # For the schema; the service refuses anything else with 400 invalid_input.
    Path(json_schema_extra={"format": "uuid"}),
]


def _presigned(url: PresignedUrl) -> PresignedOut:
    return PresignedOut(
        url=url.url, method=url.method, headers=url.headers, expires_at=url.expires_at
    )


@router.post("/media", status_code=201, responses=errors(429))
async def media_upload(body: MediaUploadIn, me: Me, svc: Svc) -> MediaUploadOut:
    """A URL to PUT exactly ``size`` bytes of encrypted media to, before it expires."""
    media_id, url = await svc.media.upload(me, body.size)
    return MediaUploadOut(media_id=media_id, upload=_presigned(url))


@router.get("/media/{media_id}", responses=errors(400, 404, 429))
async def media_download(media_id: MediaId, me: Me, svc: Svc) -> MediaDownloadOut:
    return MediaDownloadOut(
        media_id=media_id, download=_presigned(await svc.media.download(me, media_id))
    )
