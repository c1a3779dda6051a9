"""Running the real ``tidings`` command in a subprocess, as an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness import Gateway


def free_port() -> int:
    """A loopback port nothing listens on now: a server started on it later, or a
    region whose servers are gone."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


TIDINGS = str(Path(sys.executable).with_name("tidings"))
_UP = re.compile(r"is up: (http://\S+)")
_OPS = re.compile(r"^\s*metrics\s+(http://\S+)/metrics\s*$")


@dataclass
class Proc:
    process: asyncio.subprocess.Process
    url: str
    log: Path
    ops_url: str = ""
    """The operations port (``/metrics``), from the ``metrics`` line it printed."""

    def gateway(self, data_dir: Path) -> Gateway:
        return Gateway(self.url, data_dir, ops_url=self.ops_url)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, like a crashed node."""
        self.process.send_signal(signal.SIGKILL)

    async def wait(self, timeout: float = 15.0) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


async def start(
    args: list[str], data_dir: Path, log: Path, env: dict[str, str] | None = None, port: int = 0
) -> Proc:
    """Run ``tidings ARGS`` until it prints its URL and its operations URL (both ports
    free ones); ``env`` adds ``TIDINGS_*`` settings."""
    env = dict(os.environ, TIDINGS_INBOX_POLL_INTERVAL="0.5", **(env or {}))
    with log.open("ab") as err:
        process = await asyncio.create_subprocess_exec(
            TIDINGS,
            *args,
            "--port",
            str(port),
            "--ops-port",
            "0",
            "--data-dir",
            str(data_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env,
        )
    assert process.stdout is not None
    url = ""
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            if not line:
                raise AssertionError(f"tidings exited early; log:\n{log.read_text()[-3000:]}")
            if match := _UP.search(line):
                url = match.group(1)
            elif url and (match := _OPS.match(line)):
                return Proc(process, url, log, match.group(1))
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise


@contextlib.asynccontextmanager
async def running(
    args: list[str], data_dir: Path, log: Path, env: dict[str, str] | None = None, port: int = 0
) -> AsyncIterator[Proc]:
    proc = await start(args, data_dir, log, env, port)
    try:
        yield proc
    finally:
        if proc.process.returncode is None:
            proc.process.send_signal(signal.SIGTERM)
            try:
                await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        r = await http.get("/readyz")
        assert r.status_code == 200, r.text
