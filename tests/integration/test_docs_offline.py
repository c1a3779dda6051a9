"""``/docs`` (Swagger UI) and ``/redoc`` work with no other host reachable: the pages
name no other host, and every file they load is the gateway's own (``tidings.api.docs``).
The slow test renders ``/docs`` in headless Chromium with every other host cut off
(``scripts/chromium dump-dom --offline``): the operations only appear if the script ran.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from harness import Gateway, run_gateway
from servers import CHROMIUM, ROOT, chromium_ensure

PAGES = ("/docs", "/redoc")

CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}

DUMP_TIMEOUT = 30.0
"""One headless page load (~2 s here; the page gets 10 s of virtual time at most)."""


def _references(html: str) -> set[str]:
    """What the page loads: ``src``/``href`` attributes, and the OpenAPI document that
    Swagger UI (``url: '...'``) and ReDoc (``spec-url="..."``) fetch."""
    found = set(re.findall(r"""\b(?:src|href|spec-url)=["']([^"']+)["']""", html))
    found |= set(re.findall(r"""\burl: ?["']([^"']+)["']""", html))
    return found


async def test_the_docs_pages_name_no_other_host_and_their_files_are_served_here(
    embedded_gateway: Gateway,
) -> None:
    gateway = embedded_gateway
    async with gateway.http() as http:
        pages = {page: await http.get(page) for page in PAGES}
        for page, r in pages.items():
            assert r.status_code == 200, (page, r.text)
            assert r.headers["content-type"].startswith("text/html"), page
            hosts = set(re.findall(r"https?://[^\s\"'<>]*", r.text)) - {gateway.url}
            assert hosts == set(), page
        references = {page: _references(r.text) for page, r in pages.items()}
        loaded = {ref: await http.get(ref) for refs in references.values() for ref in refs}
        redirect = await http.get("/docs/oauth2-redirect")
        spec = (await http.get("/openapi.json")).json()
    assert "/docs/static/swagger-ui-bundle.js" in references["/docs"]
    assert "/docs/static/swagger-ui.css" in references["/docs"]
    assert "/docs/static/redoc.standalone.js" in references["/redoc"]
    assert "/openapi.json" in references["/docs"] & references["/redoc"]
    for ref, r in loaded.items():
        assert ref.startswith("/"), ref  # on the page's own host
        assert r.status_code == 200, (ref, r.text[:200])
        media_type = r.headers["content-type"].split(";")[0]
        assert media_type in CONTENT_TYPES[Path(ref).suffix], (ref, media_type)
        assert r.content, ref
    assert redirect.status_code == 200
    assert not [p for p in spec["paths"] if p.startswith(("/docs", "/redoc"))]

    async with gateway.ops_http() as http:
        metrics = (await http.get("/metrics")).text
    assert 'route="/docs/static",status="200"' in metrics  # not counted as unmatched


async def test_a_missing_docs_file_is_the_api_s_404(embedded_gateway: Gateway) -> None:
    async with embedded_gateway.http() as http:
        missing = await http.get("/docs/static/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_ensure()


@pytest.mark.slow
async def test_docs_render_in_headless_chromium_with_no_other_host_reachable(
    chromium: str, tmp_path: Path
) -> None:
    async with run_gateway(tmp_path / "data") as gateway:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            str(CHROMIUM),
            "dump-dom",
            "--offline",
            f"{gateway.url}/docs",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), DUMP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"{chromium} did not dump /docs within {DUMP_TIMEOUT:.0f} s")
        took = time.monotonic() - started
    dom = out.decode(errors="replace")
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    print(f"\n/docs rendered by {chromium} in {took:.1f} s ({len(dom)} characters of DOM)")
    # What Swagger UI builds from the OpenAPI document; the served HTML has none of it.
    assert '<div id="swagger-ui"><div class="swagger-ui">' in dom
    assert re.search(r'<h1 class="title">Tidings<span>', dom), dom[-3000:]
    for path in ("/v1/auth/register", "/v1/messages", "/v1/users/me"):
        assert f'class="opblock-summary-path" data-path="{path}"' in dom, path
