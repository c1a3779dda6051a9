"""Running the apps under uvicorn, shared by the CLI and the test fixtures.

A process serves two ports: the client app (REST, WebSocket) on ``port`` and the
operations app (metrics, analytics, health) on ``ops_port``, one uvicorn server each in
the same event loop. The client server owns the signals and the lifespan (the engines);
the operations server follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from tidings.api.ws_protocol import DirectWebSocket
from tidings.core.limits import DEFAULT_LIMITS


def uvicorn_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # /v1/ws straight on websockets' sans-I/O protocol, no ASGI in between.
        ws=DirectWebSocket,
        ws_max_size=DEFAULT_LIMITS.ws_frame_bytes,
        # Frames carry ciphertext, which does not compress: per-message deflate would
        # only cost CPU per frame and a zlib context (~300 KiB) per socket.
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        # The protocol's own keepalive only finds dead TCP peers (the app's heartbeat,
        # 90 s of silence, is the authority); a pong read late because the gateway is
        # busy must not close a healthy client's socket.
        ws_ping_timeout=60.0,
        # The app decides which X-Forwarded-For to believe (TIDINGS_TRUSTED_PROXIES);
        # uvicorn's own rewriting would trust any request from 127.0.0.1.
        proxy_headers=False,
        lifespan="on",
    )


def ops_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The operations server: plain HTTP, no WebSocket, no lifespan (the client app's
    lifespan starts and stops the engines both apps read)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws="none",
        proxy_headers=False,
        lifespan="off",
        access_log=False,  # a scrape every few seconds would drown the log
    )


class _Follower(uvicorn.Server):
    """A second server in the process: SIGTERM and SIGINT stay with the first one,
    which stops this one once it has stopped (see ``Serving.wait``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Running:
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start(
    config: uvicorn.Config,
    *,
    sockets: Sequence[socket.socket] | None = None,
    follower: bool = False,
) -> Running:
    """Start serving in this loop; returns once the socket is bound (port 0 allowed).
    ``sockets``: listen on these, already bound; ``follower``: leave the signals alone."""
    server = _Follower(config) if follower else uvicorn.Server(config)
    task = asyncio.create_task(server.serve(list(sockets) if sockets is not None else None))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up; see its log")
        await asyncio.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return Running(server, task, str(host), int(port))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port); ``OSError`` when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    sock.set_inheritable(True)
    return sock


@dataclass
class Serving:
    """The two servers of one process."""

    client: Running
    ops: Running

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def ops_url(self) -> str:
        return self.ops.url

    async def wait(self) -> None:
        """Until the client server stops (a signal, or a crash), then stop the other."""
        try:
            await self.client.task
        finally:
            await self.ops.stop()

    async def stop(self) -> None:
        try:
            await self.client.stop()
        finally:
            await self.ops.stop()


async def serve(
    client: FastAPI,
    ops: FastAPI,
    *,
    host: str,
    port: int,
    ops_port: int,
    log_level: str = "info",
) -> Serving:
    """Start both servers. The operations port is taken first: a busy one stops the
    process before any engine starts."""
    try:
        ops_socket = bind(host, ops_port)
    except OSError as exc:
        raise SystemExit(
            f"cannot listen on {host}:{ops_port} for /metrics (TIDINGS_OPS_PORT; 0 picks "
            f"a free port): {exc.strerror or exc}"
        ) from exc
    try:
        running = await start(uvicorn_config(client, host, port, log_level))
    except BaseException:
        ops_socket.close()
        raise
    try:
        ops_running = await start(
            ops_config(ops, host, ops_port, log_level), sockets=[ops_socket], follower=True
        )
    except BaseException:
        await running.stop()
        raise
    return Serving(running, ops_running)
