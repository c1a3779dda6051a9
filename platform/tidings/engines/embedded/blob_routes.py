"""HTTP endpoints that serve the file blob store's presigned URLs (the embedded S3)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from tidings.api.contract import errors
from tidings.engines.embedded.blobs import BLOB_ROUTE, FileBlobStore
from tidings.errors import NotFound


def blob_router(store: FileBlobStore) -> APIRouter:
    router = APIRouter(prefix=BLOB_ROUTE, tags=["blobs"])

    @router.put("/{key:path}", status_code=201, responses=errors(400, 403, 409, 413))
    async def upload(
        key: str,
        request: Request,
        size: int = Query(ge=1),
        expires: int = Query(),
        signature: str = Query(min_length=64, max_length=64),
    ) -> Response:
        store.verify("PUT", key, size, expires, signature)
        length = request.headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        await store.write(key, size, declared, request.stream())
        return Response(status_code=201)

    @router.get("/{key:path}", responses=errors(400, 403, 404))
    async def download(
        key: str,
        size: int = Query(ge=0),
        expires: int = Query(),
        signature: str = Query(min_length=64, max_length=64),
    ) -> FileResponse:
        path = store.verify("GET", key, size, expires, signature)
        if not path.is_file():
            raise NotFound("blob does not exist")
        return FileResponse(path, media_type="application/octet-stream")

    return router
