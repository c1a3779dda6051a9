"""Running an app under uvicorn, shared by the CLI and the test fixtures."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from tidings.core.limits import DEFAULT_LIMITS


def uvicorn_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws="websockets-sansio",
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


async def start(config: uvicorn.Config) -> Running:
    """Start serving in this loop; returns once the socket is bound (port 0 allowed)."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up; see its log")
        await asyncio.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return Running(server, task, str(host), int(port))
