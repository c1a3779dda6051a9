"""Media across regions, and after a region is lost (docs/failover.md, "Media").

The regions' buckets replicate both ways, as S3 Cross-Region Replication keeps them;
here the replicated pair is one bucket of the test's S3 server, which is replication
with no lag. What this holds the platform to: a blob is fetched through any region's
gateway with the id the message carried (no region in it), and through a surviving
region's gateway once the region it was uploaded through is gone."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import httpx

from harness import register, run_gateway
from servers import as_settings, unique_region


async def test_a_blob_uploaded_in_one_region_is_fetched_through_another_after_the_loss(
    distributed_env: dict[str, str], tmp_path: Path
) -> None:
    settings = as_settings(distributed_env)
    blob = os.urandom(64 * 1024)
    async with run_gateway(tmp_path / "b", region=unique_region(), **settings) as west:
        async with run_gateway(tmp_path / "a", region=unique_region(), **settings) as east:
            alice = await register(east)
            bob = replace(await register(east), gateway=west)  # his phone uses the west
            async with alice.http() as http:
                r = await http.post("/v1/media", json={"size": len(blob)})
                assert r.status_code == 201, r.text
                created = r.json()
            upload = created["upload"]
            async with httpx.AsyncClient() as s3:
                r = await s3.put(upload["url"], content=blob, headers=upload["headers"])
                assert r.status_code == 200, r.text

            async def fetched() -> bytes:
                async with bob.http() as http:
                    r = await http.get(f"/v1/media/{created['media_id']}")
                    assert r.status_code == 200, r.text
                async with httpx.AsyncClient() as s3:
                    got = await s3.get(r.json()["download"]["url"])
                    assert got.status_code == 200, got.text
                    return got.content

            assert await fetched() == blob
        # The east region is gone (its gateway stopped): the west still serves the blob.
        assert await fetched() == blob
