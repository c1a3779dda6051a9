"""S3BlobStore against a real S3 server (s3proxy, started by ``scripts/deps up s3``).

Every test works on its own keys (or its own bucket), so tests can share the server.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.session
import httpx
import pytest
from botocore.config import Config

from tidings.engines.s3 import S3BlobStore
from tidings.errors import Unavailable

TTL = 300


def new_key() -> str:
    return f"test/{uuid.uuid4()}"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def make_store(s3_env: dict[str, str], **overrides: Any) -> S3BlobStore:
    settings: dict[str, Any] = {
        "bucket": s3_env["TIDINGS_S3_BUCKET"],
        "endpoint": s3_env["TIDINGS_S3_ENDPOINT"],
        "access_key": s3_env["TIDINGS_S3_ACCESS_KEY"],
        "secret_key": s3_env["TIDINGS_S3_SECRET_KEY"],
    }
    return S3BlobStore(**(settings | overrides))


@pytest.fixture
async def store(s3_env: dict[str, str]) -> AsyncIterator[S3BlobStore]:
    blobs = make_store(s3_env)
    await blobs.start()
    yield blobs
    await blobs.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
def admin(s3_env: dict[str, str]) -> Iterator[Any]:
    """A plain botocore client, to look at and clean up the server behind the store."""
    client = botocore.session.Session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3_env["TIDINGS_S3_ENDPOINT"],
        aws_access_key_id=s3_env["TIDINGS_S3_ACCESS_KEY"],
        aws_secret_access_key=s3_env["TIDINGS_S3_SECRET_KEY"],
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    yield client
    client.close()


async def upload(store: S3BlobStore, http: httpx.AsyncClient, key: str, blob: bytes) -> None:
    put = await store.presign_upload(key, len(blob), TTL)
    r = await http.put(put.url, content=blob, headers=put.headers)
    assert r.status_code == 200, r.text


def calls_of(store: S3BlobStore) -> list[Callable[[], Awaitable[object]]]:
    """Every call that talks to the server."""

    async def size_of() -> object:
        return await store.size_of(new_key())

    return [store.start, store.ping, size_of]


def error_code(r: httpx.Response) -> str:
    assert r.status_code == 403, r.text
    start = r.text.index("<Code>") + len("<Code>")
    return r.text[start : r.text.index("</Code>")]


async def test_upload_then_download_returns_the_same_bytes(
    store: S3BlobStore, http: httpx.AsyncClient
) -> None:
    key, blob = new_key(), os.urandom(300 * 1024)
    assert await store.size_of(key) is None

    put = await store.presign_upload(key, len(blob), TTL)
    assert put.method == "PUT"
    assert put.url.startswith(f"{store.endpoint}/{store.bucket}/{key}?")  # path-style
    assert put.headers == {
        "Content-Length": str(len(blob)),
        "Content-Type": "application/octet-stream",
        "If-None-Match": "*",
    }
    signed = query_of(put.url)
    assert signed["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert signed["X-Amz-SignedHeaders"] == "content-length;content-type;host;if-none-match"
    assert signed["X-Amz-Expires"] == str(TTL)
    r = await http.put(put.url, content=blob, headers=put.headers)
    assert r.status_code == 200, r.text
    assert await store.size_of(key) == len(blob)

    get = await store.presign_download(key, TTL)
    assert get.method == "GET"
    assert get.headers == {}
    r = await http.get(get.url)
    assert r.status_code == 200, r.text
    assert r.content == blob
    assert r.headers["content-type"] == "application/octet-stream"


async def test_expiry_and_signing_time_come_from_the_clock(s3_env: dict[str, str]) -> None:
    issued = 1_700_000_000
    store = make_store(s3_env, clock=lambda: issued + 0.75)
    try:
        put = await store.presign_upload(new_key(), 10, 60)
        get = await store.presign_download(new_key(), 3600)
    finally:
        await store.close()
    assert put.expires_at == issued + 60
    assert get.expires_at == issued + 3600
    for url, expires in ((put.url, "60"), (get.url, "3600")):
        signed = query_of(url)
        assert signed["X-Amz-Date"] == "20231114T221320Z"  # = issued, in UTC
        assert signed["X-Amz-Expires"] == expires
        assert signed["X-Amz-Credential"].split("/")[1:] == [
            "20231114",
            "us-east-1",
            "s3",
            "aws4_request",
        ]
    with pytest.raises(ValueError, match="expires_in"):
        await store.presign_download(new_key(), 0)
    with pytest.raises(ValueError, match="expires_in"):
        await store.presign_download(new_key(), 7 * 24 * 3600 + 1)


async def test_urls_used_after_they_expired_are_refused(
    s3_env: dict[str, str], store: S3BlobStore, http: httpx.AsyncClient
) -> None:
    key, blob = new_key(), b"expired"
    await upload(store, http, key, blob)
    # A clock two minutes behind: a 60 s URL is expired the moment it is made.
    issued = time.time() - 120
    late = make_store(s3_env, clock=lambda: issued)
    try:
        get = await late.presign_download(key, 60)
        put = await late.presign_upload(new_key(), 5, 60)
    finally:
        await late.close()
    r = await http.get(get.url)
    assert error_code(r) == "AccessDenied", r.text
    assert "expired" in r.text
    r = await http.put(put.url, content=b"12345", headers=put.headers)
    assert error_code(r) == "AccessDenied", r.text
    # Pushing the expiry forward breaks the signature instead.
    r = await http.get(get.url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"))
    assert error_code(r) == "SignatureDoesNotMatch"
    # The same request signed now works.
    r = await http.get((await store.presign_download(key, 60)).url)
    assert r.status_code == 200, r.text
    assert r.content == blob


async def test_a_url_grants_one_operation_on_one_key(
    store: S3BlobStore, http: httpx.AsyncClient
) -> None:
    mine, other = new_key(), new_key()
    await upload(store, http, mine, b"mine")
    await upload(store, http, other, b"other")

    get = await store.presign_download(mine, TTL)
    r = await http.get(get.url.replace(mine, other))  # another key, same signature
    assert error_code(r) == "SignatureDoesNotMatch"
    assert b"other" not in r.content
    r = await http.put(get.url, content=b"evil")  # a download URL cannot write
    assert error_code(r) == "SignatureDoesNotMatch"
    signature = query_of(get.url)["X-Amz-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    r = await http.get(get.url.replace(signature, flipped))
    assert error_code(r) == "SignatureDoesNotMatch"

    fresh = new_key()
    put = await store.presign_upload(fresh, 4, TTL)
    r = await http.get(put.url)  # an upload URL cannot read
    assert error_code(r) == "SignatureDoesNotMatch"
    r = await http.put(put.url.replace(fresh, other), content=b"evil", headers=put.headers)
    assert error_code(r) == "SignatureDoesNotMatch"

    assert await store.size_of(fresh) is None
    r = await http.get((await store.presign_download(other, TTL)).url)
    assert r.content == b"other"  # untouched by the attempts


async def test_an_upload_of_another_size_or_type_is_refused(
    store: S3BlobStore, http: httpx.AsyncClient
) -> None:
    key = new_key()
    put = await store.presign_upload(key, 1000, TTL)
    content_type = {k: v for k, v in put.headers.items() if k != "Content-Length"}
    for wrong in (999, 1001, 0):
        r = await http.put(put.url, content=b"x" * wrong, headers=content_type)
        assert error_code(r) == "SignatureDoesNotMatch", wrong

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000

    async with httpx.AsyncClient(timeout=30) as once:  # a connection of its own
        try:
            r = await once.put(put.url, content=chunks(), headers=content_type)
        except httpx.TransportError:
            # s3proxy answers 403 as soon as it has the headers and closes the connection
            # without reading the chunked body: depending on timing the client sees the
            # 403 or a reset. Either way nothing is stored (checked below).
            pass
        else:
            assert "content-length" not in r.request.headers
            assert error_code(r) == "SignatureDoesNotMatch"
    r = await http.put(
        put.url, content=b"x" * 1000, headers=content_type | {"Content-Type": "text/html"}
    )
    assert error_code(r) == "SignatureDoesNotMatch"
    r = await http.put(put.url, content=b"x" * 1000)  # no Content-Type, no If-None-Match
    assert error_code(r) == "SignatureDoesNotMatch"
    without_condition = {"Content-Type": put.headers["Content-Type"]}  # would overwrite
    r = await http.put(put.url, content=b"x" * 1000, headers=without_condition)
    assert error_code(r) == "SignatureDoesNotMatch"
    assert await store.size_of(key) is None  # nothing stored by the refused attempts

    r = await http.put(put.url, content=b"y" * 1000, headers=put.headers)
    assert r.status_code == 200, r.text
    assert await store.size_of(key) == 1000


async def test_urls_are_signed_for_the_public_endpoint(
    s3_env: dict[str, str], store: S3BlobStore, http: httpx.AsyncClient
) -> None:
    """Clients reach S3 at another address (say, a load balancer that keeps ``Host``)."""
    public = make_store(s3_env, public_endpoint="https://blobs.example.test")
    key = new_key()
    try:
        put = await public.presign_upload(key, 6, TTL)
        get = await public.presign_download(key, TTL)
        assert await public.size_of(key) is None  # HEAD still goes to the private endpoint
    finally:
        await public.close()
    for url in (put.url, get.url):
        assert url.startswith(f"https://blobs.example.test/{store.bucket}/{key}?"), url

    def via_server(url: str) -> str:  # the same request, delivered to the real server
        return f"{store.endpoint}{url.removeprefix('https://blobs.example.test')}"

    as_public = {"Host": "blobs.example.test"}
    r = await http.put(via_server(put.url), content=b"public", headers=put.headers)
    assert error_code(r) == "SignatureDoesNotMatch"  # signed for the public host only
    r = await http.put(via_server(put.url), content=b"public", headers=put.headers | as_public)
    assert r.status_code == 200, r.text
    r = await http.get(via_server(get.url), headers=as_public)
    assert r.status_code == 200, r.text
    assert r.content == b"public"
    assert await store.size_of(key) == 6


async def test_start_creates_a_missing_bucket_and_is_idempotent(
    s3_env: dict[str, str], http: httpx.AsyncClient, admin: Any
) -> None:
    bucket = f"tidings-test-{uuid.uuid4().hex[:16]}"
    first = make_store(s3_env, bucket=bucket)
    second = make_store(s3_env, bucket=bucket)
    try:
        with pytest.raises(Unavailable, match="does not exist"):
            await first.ping()
        await first.start()
        await first.ping()
        await first.start()  # again on the same store
        await second.start()  # and from another store, on the existing bucket
        await second.ping()
        key = new_key()
        await upload(first, http, key, b"new bucket")
        assert await second.size_of(key) == len(b"new bucket")
        r = await http.get((await second.presign_download(key, TTL)).url)
        assert r.content == b"new bucket"
    finally:
        await first.close()
        await second.close()
        listed = admin.list_objects_v2(Bucket=bucket).get("Contents", [])
        for item in listed:
            admin.delete_object(Bucket=bucket, Key=item["Key"])
        admin.delete_bucket(Bucket=bucket)


async def test_an_unreachable_endpoint_is_unavailable(s3_env: dict[str, str]) -> None:
    store = make_store(s3_env, endpoint="http://127.0.0.1:1")
    try:
        for call in calls_of(store):
            with pytest.raises(Unavailable) as caught:
                await call()
            error = caught.value
            assert error.retryable
            assert "http://127.0.0.1:1" in error.message
            assert "cannot be reached" in error.message
            assert "TIDINGS_S3_ENDPOINT" in error.message
        # Presigning is computation only: it works while the server is away.
        put = await store.presign_upload(new_key(), 3, TTL)
        assert put.url.startswith("http://127.0.0.1:1/")
    finally:
        await store.close()


async def test_refused_credentials_are_unavailable(s3_env: dict[str, str]) -> None:
    store = make_store(s3_env, secret_key="not-the-secret")
    try:
        for call in calls_of(store):
            with pytest.raises(Unavailable) as caught:
                await call()
            assert "refused" in caught.value.message
            assert "secret key" in caught.value.message
    finally:
        await store.close()
    with pytest.raises(ValueError, match="both"):
        make_store(s3_env, secret_key="")


async def test_an_upload_url_writes_once(store: S3BlobStore, http: httpx.AsyncClient) -> None:
    key = new_key()
    put = await store.presign_upload(key, 5, TTL)
    r = await http.put(put.url, content=b"first", headers=put.headers)
    assert r.status_code == 200, r.text
    r = await http.put(put.url, content=b"again", headers=put.headers)
    assert r.status_code == 412, r.text
    assert "<Code>PreconditionFailed</Code>" in r.text
    get = await store.presign_download(key, TTL)
    assert (await http.get(get.url)).content == b"first"
