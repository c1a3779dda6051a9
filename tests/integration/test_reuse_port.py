"""``TIDINGS_REUSE_PORT``: several servers on one host share the client port (a
component's pods on a node's network), each keeps an operations port of its own, and a
pod's probe reaches its own process through the port written to its data directory."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tidings import probe, server


def apps(name: str) -> tuple[FastAPI, FastAPI]:
    """A client app saying which server answered, and an operations app with health."""
    client, ops = FastAPI(), FastAPI()

    @client.get("/who")
    async def who() -> dict[str, str]:
        return {"server": name}

    @ops.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "server": name}

    return client, ops


@contextlib.asynccontextmanager
async def serving(
    name: str, data_dir: Path, *, port: int = 0, ops_port: int = 0
) -> AsyncIterator[server.Serving]:
    client, ops = apps(name)
    running = await server.serve(
        client, ops, host="127.0.0.1", port=port, ops_port=ops_port, log_level="warning",
        reuse_port=True, data_dir=data_dir,
    )  # fmt: skip
    try:
        yield running
    finally:
        await running.stop()


async def who_answers(url: str) -> str:
    """One request on a new connection (a pooled one would stay with one server)."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer: str = (await http.get(f"{url}/who")).json()["server"]
        return answer


async def test_two_servers_share_the_client_port_and_both_serve(tmp_path: Path) -> None:
    async with serving("a", tmp_path / "a") as first:
        taken_ops = first.ops.port
        async with serving(
            "b", tmp_path / "b", port=first.client.port, ops_port=taken_ops
        ) as second:
            assert second.client.port == first.client.port
            # The operations port was the first's: the second listens on a free one.
            assert second.ops.port != taken_ops
            seen: set[str] = set()
            for _ in range(200):  # the kernel hashes each connection's addresses
                seen.add(await who_answers(first.url))
                if seen == {"a", "b"}:
                    break
            assert seen == {"a", "b"}
            for name, each in (("a", first), ("b", second)):
                written = (tmp_path / name / probe.OPS_PORT_FILE).read_text()
                assert int(written) == each.ops.port
                env = {"TIDINGS_DATA_DIR": str(tmp_path / name), "TIDINGS_HOST": "0.0.0.0"}
                assert probe.target(env) == ("127.0.0.1", each.ops.port)
                assert await asyncio.to_thread(probe.probe, "/readyz", env) is None
        # The first one serves alone again.
        assert {await who_answers(first.url) for _ in range(5)} == {"a"}


async def test_a_probe_before_the_port_is_written_or_of_a_gone_process_fails(
    tmp_path: Path,
) -> None:
    env = {"TIDINGS_DATA_DIR": str(tmp_path)}
    problem = await asyncio.to_thread(probe.probe, "/readyz", env)
    assert problem is not None
    assert "no operations port written yet" in problem
    async with serving("a", tmp_path) as running:
        port = running.ops.port
        assert await asyncio.to_thread(probe.probe, "/nothing", env) is not None
    assert (tmp_path / probe.OPS_PORT_FILE).read_text().strip() == str(port)
    assert await asyncio.to_thread(probe.probe, "/readyz", env) is not None
    assert probe.main(["readyz"]) == 2


def test_a_shared_socket_takes_no_connection_before_it_listens() -> None:
    """uvicorn listens once the engines started: until then the kernel gives this
    process's socket none of the port's connections (they go to siblings serving)."""
    bound = server.bind_shared("127.0.0.1", 0)
    try:
        port = bound.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        bound.listen()
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        bound.close()


async def test_without_reuse_port_a_taken_ops_port_still_stops_the_process(
    tmp_path: Path,
) -> None:
    holder = server.bind("127.0.0.1", 0)
    try:
        client, ops = apps("a")
        with pytest.raises(SystemExit, match="TIDINGS_OPS_PORT"):
            await server.serve(
                client, ops, host="127.0.0.1", port=0, ops_port=holder.getsockname()[1]
            )
        with pytest.raises(OSError, match="in use") as taken:
            server.bind_ops("127.0.0.1", holder.getsockname()[1], fallback=False)
        assert taken.value.errno == errno.EADDRINUSE
    finally:
        holder.close()
