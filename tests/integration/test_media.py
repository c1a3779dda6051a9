"""Encrypted media through presigned URLs served by the gateway (the embedded blob store)."""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from harness import Device, Gateway, register

MIB = 1024 * 1024


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"], error
    assert error["message"], error
    return error


async def new_upload(device: Device, size: int) -> dict[str, Any]:
    async with device.http() as http:
        r = await http.post("/v1/media", json={"size": size})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return f"{parts.path}?{urlencode(query)}"


def flip(hex_text: str) -> str:
    return ("0" if hex_text[0] != "0" else "1") + hex_text[1:]


async def test_upload_then_download_returns_the_same_bytes(gateway: Gateway) -> None:
    alice = await register(gateway)
    bob = await register(gateway)
    blob = os.urandom(200 * 1024)  # above the 96 KiB JSON body limit: blobs are exempt
    created = await new_upload(alice, len(blob))
    media_id, upload = created["media_id"], created["upload"]
    uuid.UUID(media_id)
    assert upload["method"] == "PUT"
    if gateway.engine == "embedded":
        assert upload["url"].startswith("/v1/blobs/")  # relative to the gateway
    else:
        assert upload["url"].startswith("http")  # the S3 store, not the gateway
    assert upload["headers"]["Content-Length"] == str(len(blob))
    assert upload["expires_at"] > 0

    async with gateway.http() as http:  # presigned: no bearer token needed
        r = await http.put(upload["url"], content=blob, headers=upload["headers"])
        assert r.status_code == (201 if gateway.engine == "embedded" else 200), r.text

    async with bob.http() as http:  # any signed-in user holding the id may fetch it
        r = await http.get(f"/v1/media/{media_id}")
        assert r.status_code == 200, r.text
        download = r.json()
        assert download["media_id"] == media_id
        assert download["download"]["method"] == "GET"
    async with gateway.http() as http:
        r = await http.get(download["download"]["url"])
    assert r.status_code == 200, r.text
    assert r.content == blob
    assert r.headers["content-type"] == "application/octet-stream"


async def test_an_upload_url_works_once_and_never_overwrites_the_blob(gateway: Gateway) -> None:
    alice = await register(gateway)
    created = await new_upload(alice, 8)
    upload = created["upload"]
    async with gateway.http() as http:
        r = await http.put(upload["url"], content=b"original", headers=upload["headers"])
        assert r.status_code in (200, 201), r.text
        # Replayed within its 15 minutes, by anyone who saw the URL.
        r = await http.put(upload["url"], content=b"replaced", headers=upload["headers"])
        assert r.status_code == (409 if gateway.engine == "embedded" else 412), r.text
        if gateway.engine == "embedded":
            assert error_of(r)["code"] == "conflict"
    async with alice.http() as http:
        download = (await http.get(f"/v1/media/{created['media_id']}")).json()["download"]
    async with gateway.http() as http:
        assert (await http.get(download["url"])).content == b"original"


# The embedded blob server's own checks; the S3 store's are in test_s3_blobs.py.
async def test_upload_with_a_different_content_length_is_400(embedded_gateway: Gateway) -> None:
    gateway = embedded_gateway
    alice = await register(gateway)
    upload = (await new_upload(alice, 1000))["upload"]
    async with gateway.http() as http:
        for wrong in (999, 1001):
            r = await http.put(upload["url"], content=b"x" * wrong)
            assert r.status_code == 400, (wrong, r.text)
            error = error_of(r)
            assert error["code"] == "invalid_input"
            assert "1000" in error["message"]

        async def chunks() -> Any:
            yield b"x" * 1000

        r = await http.put(upload["url"], content=chunks())  # chunked: no Content-Length
        assert r.status_code == 400, r.text
        assert "Content-Length" in error_of(r)["message"]
        # Nothing was stored by the failed attempts; the right size still works.
        r = await http.put(upload["url"], content=b"y" * 1000)
        assert r.status_code == 201, r.text


async def test_tampered_blob_urls_are_403(embedded_gateway: Gateway) -> None:
    gateway = embedded_gateway
    alice = await register(gateway)
    created = await new_upload(alice, 10)
    upload = created["upload"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(upload["url"]).query).items()}
    async with gateway.http() as http:
        r = await http.put(
            with_query(upload["url"], signature=flip(query["signature"])), content=b"0" * 10
        )
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "forbidden"
        # The signature covers the size and the expiry too.
        r = await http.put(with_query(upload["url"], size="11"), content=b"0" * 11)
        assert r.status_code == 403, r.text
        later = str(int(query["expires"]) + 3600)
        r = await http.put(with_query(upload["url"], expires=later), content=b"0" * 10)
        assert r.status_code == 403, r.text
        # An upload URL does not grant a download, nor another key.
        r = await http.get(upload["url"])
        assert r.status_code == 403, r.text
        other = upload["url"].replace(created["media_id"], str(uuid.uuid4()))
        r = await http.put(other, content=b"0" * 10)
        assert r.status_code == 403, r.text

        r = await http.put(upload["url"], content=b"0" * 10)
        assert r.status_code == 201, r.text

    async with alice.http() as http:
        download = (await http.get(f"/v1/media/{created['media_id']}")).json()["download"]
    dquery = {k: v[0] for k, v in parse_qs(urlsplit(download["url"]).query).items()}
    async with gateway.http() as http:
        r = await http.get(with_query(download["url"], signature=flip(dquery["signature"])))
        assert r.status_code == 403, r.text
        r = await http.put(download["url"], content=b"0" * 10)  # a download URL cannot write
        assert r.status_code in (400, 403), r.text
        r = await http.get(with_query(download["url"], signature="short"))
        assert r.status_code == 422, r.text
        assert (await http.get(download["url"])).content == b"0" * 10


async def test_media_size_over_the_limit_is_422(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        # The request model bounds ``size`` (1..100 MiB), so validation answers first.
        for size in (100 * MIB + 1, 0, -5):
            r = await http.post("/v1/media", json={"size": size})
            assert r.status_code == 422, (size, r.text)
            error = error_of(r)
            assert error["code"] == "invalid_input"
            assert "size" in error["message"]
        r = await http.post("/v1/media", json={"size": 100 * MIB})  # exactly the limit
        assert r.status_code == 201, r.text


async def test_download_of_a_never_uploaded_media_id_is_404(gateway: Gateway) -> None:
    alice = await register(gateway)
    presigned_only = (await new_upload(alice, 10))["media_id"]
    async with alice.http() as http:
        for media_id in (str(uuid.uuid4()), presigned_only):
            r = await http.get(f"/v1/media/{media_id}")
            assert r.status_code == 404, (media_id, r.text)
            assert error_of(r)["code"] == "not_found"


async def test_non_uuid_media_id_is_400(gateway: Gateway) -> None:
    alice = await register(gateway)
    async with alice.http() as http:
        for media_id in ("not-a-uuid", "123", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"):
            r = await http.get(f"/v1/media/{media_id}")
            assert r.status_code == 400, (media_id, r.text)
            error = error_of(r)
            assert error["code"] == "invalid_input"
            assert "UUID" in error["message"]


async def test_media_routes_need_a_bearer_token(gateway: Gateway) -> None:
    async with gateway.http() as http:
        r = await http.post("/v1/media", json={"size": 10})
        assert r.status_code == 401, r.text
        r = await http.get(f"/v1/media/{uuid.uuid4()}")
        assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_a_non_ascii_blob_signature_is_403_not_500(embedded_gateway: Gateway) -> None:
    signature = "%C3%A9" + "a" * 63  # 64 characters once decoded, the first one not ASCII
    async with embedded_gateway.http() as http:
        for method in ("GET", "PUT"):
            r = await http.request(
                method,
                f"/v1/blobs/media%2Fx?size=1&expires=1&signature={signature}",
                content=b"x" if method == "PUT" else None,
            )
            assert r.status_code == 403, (method, r.text)
            assert error_of(r)["code"] == "forbidden"
