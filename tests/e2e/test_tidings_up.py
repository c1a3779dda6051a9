"""``tidings up`` as a newcomer runs it: one process, embedded engines, then use it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

import procs
from harness import body_text, ciphertexts, online, register

pytestmark = pytest.mark.slow


async def test_tidings_up_serves_health_metrics_openapi_and_a_conversation(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    async with procs.running(["up"], data, log) as proc:
        async with httpx.AsyncClient(base_url=proc.url, timeout=5.0) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/readyz")).json() == {"status": "ready"}
            spec = (await http.get("/openapi.json")).json()
            assert "/v1/messages" in spec["paths"]
            assert "/v1/keys/{user_id}" in spec["paths"]

        gw = proc.gateway(data)
        alice, bob = await register(gw), await register(gw)
        bob_ws = await online(bob)
        alice_ws = await alice.connect()
        body = {
            "id": "hello",
            "to": {"user": bob.user_id},
            "ciphertexts": ciphertexts({bob.user_id: [1]}, "hello from the CLI"),
        }
        assert (await alice_ws.request("send", body))["status"] == 200
        (delivery,) = await bob_ws.deliveries(1)
        assert body_text(delivery) == "hello from the CLI"
        await alice_ws.close()
        await bob_ws.close()

        async with httpx.AsyncClient(base_url=proc.ops_url, timeout=5.0) as http:
            metrics = (await http.get("/metrics")).text
        assert 'tidings_messages_accepted_total{kind="direct"} 1.0' in metrics
        assert "tidings_inbox_writes_total" in metrics

        # `tidings code` reads the dev-mode outbox, as the README tells newcomers.
        code_proc = await asyncio.create_subprocess_exec(
            procs.TIDINGS,
            "code",
            alice.phone,
            "--data-dir",
            str(data),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await code_proc.communicate()
        assert code_proc.returncode == 0
        assert out.decode().strip().isdigit()

        proc.process.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
