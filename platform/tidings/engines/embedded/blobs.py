"""BlobStore on local files, behind HMAC-signed expiring URLs served by the gateway.

The URL grants exactly one operation on one key (and for uploads, one exact size)
until it expires, like an S3 presigned URL. An upload never replaces a stored blob, so
an upload URL works once (the S3 store signs ``If-None-Match: *`` for the same).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote, urlencode

from tidings.errors import Conflict, Forbidden, InvalidInput, PayloadTooLarge, Unavailable
from tidings.ports import PresignedUrl

BLOB_ROUTE = "/v1/blobs"


class FileBlobStore:
    def __init__(
        self,
        root: Path,
        secret: bytes,
        base_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root, self._secret, self.base_url, self._clock = root, secret, base_url, clock
        self.root.mkdir(parents=True, exist_ok=True)

    def _sign(self, method: str, key: str, size: int, expires: int) -> str:
        message = f"{method}\n{key}\n{size}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _url(self, method: str, key: str, size: int, expires_in: int) -> PresignedUrl:
        expires = int(self._clock()) + expires_in
        query = urlencode(
            {"size": size, "expires": expires, "signature": self._sign(method, key, size, expires)}
        )
        url = f"{self.base_url}{BLOB_ROUTE}/{quote(key, safe='')}?{query}"
        headers = {"Content-Length": str(size)} if method == "PUT" else {}
        return PresignedUrl(url, method, float(expires), headers)

    async def presign_upload(self, key: str, size: int, expires_in: int) -> PresignedUrl:
        return self._url("PUT", key, size, expires_in)

    async def presign_download(self, key: str, expires_in: int) -> PresignedUrl:
        size = await self.size_of(key)
        return self._url("GET", key, size or 0, expires_in)

    async def size_of(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    async def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise Unavailable(f"blob directory {self.root} is not writable; check its owner")

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / digest[:2] / digest

    def verify(self, method: str, key: str, size: int, expires: int, signature: str) -> Path:
        """Check a presented URL; returns the file it grants access to."""
        expected = self._sign(method, key, size, expires).encode()
        # Bytes, not str: compare_digest raises on a str with non-ASCII characters.
        if not hmac.compare_digest(expected, signature.encode(errors="surrogateescape")):
            raise Forbidden("blob URL signature is invalid; request a new URL")
        if expires < self._clock():
            raise Forbidden("blob URL has expired; request a new URL")
        return self._path(key)

    async def write(
        self, key: str, declared: int, content_length: int | None, chunks: AsyncIterator[bytes]
    ) -> None:
        if content_length is None:
            raise InvalidInput("upload needs a Content-Length header equal to the declared size")
        if content_length != declared:
            raise InvalidInput(
                f"Content-Length {content_length} does not match the declared size {declared}"
            )
        path = self._path(key)
        if path.is_file():
            raise _already_uploaded()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".part{os.getpid()}.{uuid.uuid4().hex}")
        written = 0
        try:
            with partial.open("wb") as out:
                async for chunk in chunks:
                    written += len(chunk)
                    if written > declared:
                        raise PayloadTooLarge(f"upload exceeds its declared size {declared}")
                    out.write(chunk)
            if written != declared:
                raise InvalidInput(f"upload ended after {written} of {declared} bytes")
            try:
                os.link(partial, path)  # atomic, and never over a blob a racing upload stored
            except FileExistsError:
                raise _already_uploaded() from None
        finally:
            partial.unlink(missing_ok=True)


def _already_uploaded() -> Conflict:
    return Conflict("this blob was already uploaded; an upload URL works once: request a new one")
