"""BlobStore on any S3 API (AWS S3, s3proxy, MinIO, Ceph RGW, ...) through botocore.

Clients move the bytes themselves through SigV4 presigned URLs (query-string auth), so
the gateway never carries a blob. A URL grants one method on one key until it expires:
the signature covers the method, the bucket and key path, the host, the expiry and the
signed headers. Uploads sign ``Content-Length`` (the exact size the service accepted)
and ``Content-Type: application/octet-stream`` (content is ciphertext, opaque here); the
client must send both headers as given in ``PresignedUrl.headers``.

Which servers hold an upload to its size: a server that checks SigV4 rebuilds the
canonical request from the headers named in ``X-Amz-SignedHeaders`` as it received them,
so another ``Content-Length`` (or none, chunked) or ``Content-Type`` fails the signature
(403 ``SignatureDoesNotMatch``), and HTTP framing ties ``Content-Length`` to the body.
Checked against s3proxy 3.2.0 (tests/integration/test_s3_blobs.py); AWS S3 verifies
signed headers the same way, and so do MinIO and Ceph RGW by their SigV4 code (not
tested here). Uploads also sign ``If-None-Match: *``, so an upload URL writes once and a
replay is refused (412 ``PreconditionFailed``): conditional writes are in AWS S3 since
2024-08 and in s3proxy 3.2.0 (tested); a server that ignores the header would overwrite.
On a server that skipped signed headers the size would not be bound (``size_of`` reports
what was stored; the media service only checks that it exists).

The URLs are signed here rather than by ``generate_presigned_url`` of a signing client so
that the signing time comes from the injected clock: ``expires_at`` is then exactly
``X-Amz-Date + X-Amz-Expires``. botocore still builds the URL (addressing style, endpoint
rules, key encoding) through an unsigned client's ``generate_presigned_url``, and signs
it with its own ``S3SigV4QueryAuth``; presigning does no I/O (static keys; credentials
from the default chain that need a refresh are refreshed in a worker thread).

Addressing is path-style for custom endpoints (``endpoint``/``public_endpoint`` set),
regional virtual-hosted for AWS (path-style for bucket names with dots).
``public_endpoint`` is the URL clients reach the same S3 API at (a load balancer or
another host name): URLs are signed for its host, so whatever sits in front must pass
the ``Host`` header and the path through.

Blocking botocore calls (HEAD, create-bucket, client creation, which may resolve
credentials over the network) run in ``asyncio.to_thread``. Driver errors become
``tidings.errors.Unavailable`` (``raise ... from``) saying what to check.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast
from urllib.parse import urlsplit

import botocore
import botocore.session
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from tidings.errors import Unavailable
from tidings.ports import PresignedUrl

if TYPE_CHECKING:
    from botocore.config import _S3Dict

CONTENT_TYPE = "application/octet-stream"
MAX_EXPIRES_IN = 7 * 24 * 3600
"""SigV4 presigned URLs are valid for at most seven days."""

_CONNECT_TIMEOUT = 5.0
_READ_TIMEOUT = 30.0
_MAX_ATTEMPTS = 3
_POOL = 32  # >= the default to_thread executor's workers, so no connection is discarded
_REFUSED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}


class _S3Api(Protocol):
    """The operations used here (botocore builds client methods at run time)."""

    def head_bucket(self, *, Bucket: str) -> dict[str, Any]: ...
    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...
    def create_bucket(self, **params: Any) -> dict[str, Any]: ...
    def generate_presigned_url(
        self,
        ClientMethod: str,
        Params: dict[str, Any] | None = None,
        ExpiresIn: int = 3600,
        HttpMethod: str | None = None,
    ) -> str: ...
    def close(self) -> None: ...


class _ClockedQueryAuth(S3SigV4QueryAuth):
    """botocore's S3 presigned-URL signer with the signing time given, not read from the
    wall clock (``add_auth`` stamps ``context['timestamp']`` and then calls this hook,
    before anything reads it; the test of ``X-Amz-Date`` guards that order)."""

    def __init__(
        self, credentials: ReadOnlyCredentials, region: str, expires: int, issued: int
    ) -> None:
        super().__init__(credentials, "s3", region, expires)
        self._timestamp = datetime.fromtimestamp(issued, UTC).strftime(SIGV4_TIMESTAMP)

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._timestamp
        super()._modify_request_before_signing(request)  # type: ignore[misc]


@dataclass
class _Clients:
    api: _S3Api
    """Signed, at ``endpoint``: HEAD and create-bucket."""
    urls: _S3Api
    """Unsigned, at ``public_endpoint``: builds the URLs that get presigned."""
    credentials: Credentials | None


class S3BlobStore:
    def __init__(
        self,
        *,
        bucket: str,
        region: str = "us-east-1",
        endpoint: str = "",
        public_endpoint: str = "",
        access_key: str = "",
        secret_key: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name is empty")
        if bool(access_key) != bool(secret_key):
            raise ValueError("give both the S3 access key and secret key, or neither")
        for name, url in (("endpoint", endpoint), ("public endpoint", public_endpoint)):
            parts = urlsplit(url)
            if url and (parts.scheme not in ("http", "https") or not parts.netloc):
                raise ValueError(f"S3 {name} must be an http(s) URL, not {url!r}")
        self.bucket, self.region, self.endpoint = bucket, region, endpoint
        self.public_endpoint = public_endpoint or endpoint
        self._access_key, self._secret_key, self._clock = access_key, secret_key, clock
        self._clients: _Clients | None = None
        self._lock = asyncio.Lock()

    # lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Check the bucket answers, creating it when missing (idempotent)."""
        api = (await self._ready()).api
        try:
            await asyncio.to_thread(api.head_bucket, Bucket=self.bucket)
            return
        except ClientError as exc:
            if _status(exc) != 404:
                raise self._unavailable("HEAD bucket", exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("HEAD bucket", exc) from exc
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await asyncio.to_thread(api.create_bucket, **params)
        except ClientError as exc:
            if _code(exc) == "BucketAlreadyOwnedByYou":  # a concurrent start won
                return
            if _code(exc) == "BucketAlreadyExists":
                raise Unavailable(
                    f"S3 bucket {self.bucket!r} belongs to another account; "
                    "choose another bucket name (TIDINGS_S3_BUCKET)"
                ) from exc
            raise self._unavailable("create bucket", exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("create bucket", exc) from exc

    async def close(self) -> None:
        clients, self._clients = self._clients, None
        if clients is not None:
            await asyncio.to_thread(clients.api.close)
            await asyncio.to_thread(clients.urls.close)

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the bucket answers a HEAD."""
        api = (await self._ready()).api
        try:
            await asyncio.to_thread(api.head_bucket, Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable("HEAD bucket", exc) from exc

    # BlobStore ------------------------------------------------------------------------

    async def presign_upload(self, key: str, size: int, expires_in: int) -> PresignedUrl:
        if size < 0:
            raise ValueError(f"upload size must be >= 0, not {size}")
        # Signed headers: the server recomputes the signature from the headers it got.
        # ``If-None-Match: *`` (a conditional write) makes the URL work once: a replay
        # finds the object there and gets 412 instead of overwriting it.
        headers = {
            "Content-Length": str(size),
            "Content-Type": CONTENT_TYPE,
            "If-None-Match": "*",
        }
        return await self._presign("PUT", "put_object", key, headers, expires_in)

    async def presign_download(self, key: str, expires_in: int) -> PresignedUrl:
        return await self._presign("GET", "get_object", key, {}, expires_in)

    async def size_of(self, key: str) -> int | None:
        api = (await self._ready()).api
        try:
            head = await asyncio.to_thread(api.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise self._unavailable("HEAD object", exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("HEAD object", exc) from exc
        return int(head["ContentLength"])

    # internals ------------------------------------------------------------------------

    async def _presign(
        self, method: str, operation: str, key: str, headers: dict[str, str], expires_in: int
    ) -> PresignedUrl:
        if not 1 <= expires_in <= MAX_EXPIRES_IN:
            raise ValueError(f"expires_in must be 1..{MAX_EXPIRES_IN} seconds, not {expires_in}")
        clients = await self._ready()
        credentials = clients.credentials
        if credentials is None:
            raise self._unavailable("presign", NoCredentialsError())
        try:
            if isinstance(credentials, RefreshableCredentials):  # may refresh over the network
                frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
            else:
                frozen = credentials.get_frozen_credentials()
        except BotoCoreError as exc:
            raise self._unavailable("presign", exc) from exc
        issued = math.floor(self._clock())
        url = clients.urls.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, "Key": key}
        )
        request = AWSRequest(method=method, url=url, headers=headers)
        _ClockedQueryAuth(frozen, self.region, expires_in, issued).add_auth(request)
        assert request.url is not None
        return PresignedUrl(request.url, method, float(issued + expires_in), dict(headers))

    async def _ready(self) -> _Clients:
        if self._clients is None:
            async with self._lock:
                if self._clients is None:
                    try:
                        self._clients = await asyncio.to_thread(self._create_clients)
                    except BotoCoreError as exc:
                        raise self._unavailable("set up the client", exc) from exc
        return self._clients

    def _create_clients(self) -> _Clients:
        session = botocore.session.Session()
        if self._access_key:
            session.set_credentials(self._access_key, self._secret_key)
        common: dict[str, Any] = {
            "region_name": self.region,
            "connect_timeout": _CONNECT_TIMEOUT,
            "read_timeout": _READ_TIMEOUT,
            "max_pool_connections": _POOL,
            "retries": {"mode": "standard", "max_attempts": _MAX_ATTEMPTS},
            # botocore >= 1.36 would otherwise add CRC checksums that not every server knows
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
        api = session.create_client(
            "s3",
            endpoint_url=self.endpoint or None,
            config=Config(signature_version="s3v4", s3=self._addressing(self.endpoint), **common),
        )
        urls = session.create_client(
            "s3",
            endpoint_url=self.public_endpoint or None,
            config=Config(
                signature_version=botocore.UNSIGNED,
                s3=self._addressing(self.public_endpoint),
                **common,
            ),
        )
        return _Clients(cast(_S3Api, api), cast(_S3Api, urls), session.get_credentials())

    def _addressing(self, endpoint: str) -> _S3Dict:
        if endpoint:
            return {"addressing_style": "path"}
        # AWS: regional virtual-hosted URLs (botocore would presign on the global
        # endpoint, which redirects for a new bucket outside us-east-1); path-style for
        # dotted names, which do not match the wildcard TLS certificate.
        style: Literal["path", "virtual"] = "path" if "." in self.bucket else "virtual"
        return {"addressing_style": style, "us_east_1_regional_endpoint": "regional"}

    def _unavailable(self, action: str, exc: Exception) -> Unavailable:
        where = self.endpoint or f"AWS S3 ({self.region})"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return Unavailable(
                f"no usable S3 credentials ({exc}); set the access key and secret key "
                "(TIDINGS_S3_ACCESS_KEY, TIDINGS_S3_SECRET_KEY) or configure botocore's "
                "default credential chain"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return Unavailable(
                f"S3 endpoint {where} cannot be reached ({exc}); check the endpoint URL "
                "(TIDINGS_S3_ENDPOINT) and that the server is up"
            )
        if isinstance(exc, ClientError):
            status, code = _status(exc), _code(exc)
            if status == 403 or code in _REFUSED:
                return Unavailable(
                    f"S3 at {where} refused {action} on bucket {self.bucket!r} "
                    f"({status} {code}); check the access key and secret key "
                    "(TIDINGS_S3_ACCESS_KEY, TIDINGS_S3_SECRET_KEY) and that the bucket "
                    "belongs to that account"
                )
            if status == 404 and action == "HEAD bucket":
                return Unavailable(
                    f"S3 bucket {self.bucket!r} does not exist at {where}; start() creates it"
                )
            message = exc.response.get("Error", {}).get("Message", "")
            return Unavailable(
                f"S3 {action} on bucket {self.bucket!r} at {where} failed: "
                f"{status} {code} {message}".rstrip()
            )
        return Unavailable(f"S3 {action} at {where} failed: {exc}")


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
