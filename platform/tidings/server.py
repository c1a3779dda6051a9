"""Running the apps under uvicorn, shared by the CLI and the test fixtures.

A process serves two ports: the client app (REST, WebSocket) on ``port`` and the
operations app (metrics, analytics, health) on ``ops_port``, one uvicorn server each in
the same event loop. The client server owns the signals and the lifespan (the engines);
the operations server follows it.

With ``reuse_port`` the client port is shared: several processes (a component's pods on
one node's network) listen on it at once and the kernel spreads new connections among
them. The operations port cannot be shared (a scrape or a probe must reach one
process), so a process that finds it taken listens on a free one and says which in a
file its probes read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from tidings.api.ws_protocol import DirectWebSocket
from tidings.core.limits import DEFAULT_LIMITS
from tidings.probe import OPS_PORT_FILE


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


def bind_shared(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (shared with this user's
    other such sockets there), not yet listening: the kernel hands a socket connections
    from ``listen()`` on, which uvicorn calls once the lifespan (the engines) started.
    Listening before would queue clients in a process that cannot serve them yet, while
    a sibling could."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bind_ops(host: str, port: int, *, fallback: bool) -> socket.socket:
    """The operations socket on ``port``; with ``fallback``, a free port when another
    process (a sibling pod on the node) holds it."""
    try:
        return bind(host, port)
    except OSError as exc:
        if not fallback or exc.errno != errno.EADDRINUSE:
            raise
        return bind(host, 0)


def write_ops_port(data_dir: Path, port: int) -> None:
    """Atomically, so a probe never reads half a number."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / OPS_PORT_FILE
    scratch = path.with_name(f".{OPS_PORT_FILE}.{os.getpid()}")
    scratch.write_text(f"{port}\n")
    scratch.replace(path)


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
    reuse_port: bool = False,
    data_dir: Path | None = None,
) -> Serving:
    """Start both servers. The operations port is taken first: a busy one stops the
    process before any engine starts (unless ``reuse_port``: see the module). With
    ``reuse_port`` and a ``data_dir``, the operations port is written there once served."""
    if reuse_port and data_dir is not None:
        # A restarted container keeps its data directory: its probes must not reach
        # whatever listens on the port the previous process had.
        (data_dir / OPS_PORT_FILE).unlink(missing_ok=True)
    try:
        ops_socket = bind_ops(host, ops_port, fallback=reuse_port)
    except OSError as exc:
        raise SystemExit(
            f"cannot listen on {host}:{ops_port} for /metrics (TIDINGS_OPS_PORT; 0 picks "
            f"a free port): {exc.strerror or exc}"
        ) from exc
    try:
        running = await start(
            uvicorn_config(client, host, port, log_level),
            sockets=[bind_shared(host, port)] if reuse_port else None,
        )
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
    if reuse_port and data_dir is not None:
        write_ops_port(data_dir, ops_running.port)
    return Serving(running, ops_running)
