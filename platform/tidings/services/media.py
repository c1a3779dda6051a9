"""Media: presigned upload and download URLs for encrypted blobs.

Clients encrypt before upload; the key and digest travel inside the message, so the
blob store only ever holds ciphertext.
"""

from __future__ import annotations

import uuid

from tidings.core.ratelimit import Limit
from tidings.errors import InvalidInput, NotFound, PayloadTooLarge
from tidings.ports import PresignedUrl
from tidings.services.context import Context, Principal


def blob_key(media_id: str) -> str:
    return f"media/{media_id}"


class MediaService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def upload(self, principal: Principal, size: int) -> tuple[str, PresignedUrl]:
        ctx = self.ctx
        if size <= 0:
            raise InvalidInput("size must be a positive number of bytes")
        if size > ctx.limits.media_bytes:
            raise PayloadTooLarge(f"media is at most {ctx.limits.media_bytes} bytes")
        rates = ctx.rates
        await ctx.limit("media", principal.user_id, Limit(rates.media_rate, rates.media_burst))
        media_id = str(uuid.uuid4())
        url = await ctx.blobs.presign_upload(blob_key(media_id), size, ctx.limits.media_url_ttl_s)
        return media_id, url

    async def download(self, principal: Principal, media_id: str) -> PresignedUrl:
        try:
            uuid.UUID(media_id)
        except ValueError as exc:
            raise InvalidInput("media id must be a UUID") from exc
        if await self.ctx.blobs.size_of(blob_key(media_id)) is None:
            raise NotFound(
                f"media {media_id} is not in this region's store: it was never uploaded, or "
                "it was uploaded in another region moments ago and has not replicated here "
                "yet (fetch it again later)"
            )
        return await self.ctx.blobs.presign_download(
            blob_key(media_id), self.ctx.limits.media_url_ttl_s
        )
