"""Operations data off the client port: ``/metrics`` and ``/analytics/daily/*`` are
served on the operations port (``TIDINGS_OPS_PORT``) only; health on both."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx

import procs
from harness import Gateway, register, run_gateway

TODAY = time.strftime("%Y-%m-%d", time.gmtime())


async def test_the_client_port_answers_404_for_metrics_and_analytics(gateway: Gateway) -> None:
    await register(gateway)
    async with gateway.http() as http:
        for path in ("/metrics", f"/analytics/daily/{TODAY}", "/analytics/daily/0"):
            r = await http.get(path)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"]["code"] == "not_found", path
        for path in ("/healthz", "/readyz"):
            assert (await http.get(path)).status_code == 200, path
        spec = (await http.get("/openapi.json")).json()
    assert not [p for p in spec["paths"] if p == "/metrics" or p.startswith("/analytics")]


async def test_the_ops_port_serves_metrics_analytics_and_health_only(gateway: Gateway) -> None:
    assert gateway.ops_url
    assert gateway.ops_url != gateway.url
    await register(gateway)
    async with gateway.ops_http() as http:
        metrics = await http.get("/metrics")
        daily = await http.get(f"/analytics/daily/{TODAY}")
        bad_day = await http.get("/analytics/daily/2026-13-45")
        health = [(await http.get(p)).json() for p in ("/healthz", "/readyz")]
        client_routes = [await http.get(p) for p in ("/v1/users/me", "/openapi.json", "/docs")]
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'tidings_http_requests_total{method="POST",route="/v1/auth/register"' in metrics.text
    assert "tidings_otp_sent_total 1.0" in metrics.text
    assert daily.status_code == 200, daily.text
    assert bad_day.status_code == 400
    assert bad_day.json()["error"]["code"] == "invalid_input"
    assert health == [{"status": "ok"}, {"status": "ready"}]
    assert [r.status_code for r in client_routes] == [404, 404, 404]
    assert client_routes[0].json()["error"]["code"] == "not_found"


async def test_scrapes_are_not_counted_as_client_requests(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "data") as gw, gw.ops_http() as http:
        await http.get("/metrics")
        text = (await http.get("/metrics")).text
    assert 'route="/metrics"' not in text


async def test_analytics_is_served_only_by_the_analytics_process(tmp_path: Path) -> None:
    components = ("gateway", "delivery")
    async with run_gateway(tmp_path / "data", components=components) as gw, gw.ops_http() as http:
        assert (await http.get(f"/analytics/daily/{TODAY}")).status_code == 404
        assert (await http.get("/metrics")).status_code == 200


async def test_tidings_serve_prints_both_urls_and_serves_each(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    async with procs.running(["serve", "analytics"], data, log) as proc:
        assert proc.ops_url.startswith("http://127.0.0.1:")
        assert proc.ops_url != proc.url
        async with httpx.AsyncClient(timeout=5.0) as http:
            assert (await http.get(f"{proc.url}/metrics")).status_code == 404
            assert (await http.get(f"{proc.url}/analytics/daily/{TODAY}")).status_code == 404
            assert (await http.get(f"{proc.ops_url}/metrics")).status_code == 200
            assert (await http.get(f"{proc.ops_url}/analytics/daily/{TODAY}")).status_code == 200
            for base in (proc.url, proc.ops_url):
                assert (await http.get(f"{base}/readyz")).json() == {"status": "ready"}


async def test_a_taken_ops_port_stops_the_process_naming_the_setting(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            procs.TIDINGS,
            "serve",
            "delivery",
            "--port",
            "0",
            "--ops-port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0
    assert b"is up" not in out
    assert f"127.0.0.1:{port}".encode() in err, err
    assert b"TIDINGS_OPS_PORT" in err, err
