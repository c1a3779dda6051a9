"""Driving the real ``tidings`` CLI in tests: one account per ``--home``, ``tidings up``
in its own process, and an interactive ``tidings chat`` fed through stdin."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import procs
from harness import new_phone


@dataclass
class User:
    """One account's CLI: ``run`` invokes ``tidings SUBCOMMAND ... --phone --home --server``."""

    server: str
    data_dir: Path
    home: Path
    phone: str
    user_id: str = ""

    def options(self) -> list[str]:
        return ["--server", self.server, "--home", str(self.home), "--phone", self.phone]

    def code_command(self) -> str:
        return f"{shlex.quote(procs.TIDINGS)} code {{phone}} --data-dir {self.data_dir}"

    async def run(self, *args: str, ok: bool = True, timeout: float = 40.0) -> tuple[str, str]:
        """Run ``tidings *args`` for this user; returns (stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            procs.TIDINGS,
            *args,
            *self.options(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        if ok:
            assert process.returncode == 0, f"tidings {args} exited {process.returncode}: {err!r}"
        else:
            assert process.returncode != 0, f"tidings {args} should have failed: {out!r}"
        return out.decode(), err.decode()

    async def register(self) -> str:
        out, _ = await self.run("register", "--code-command", self.code_command())
        self.user_id = out.strip()
        assert re.fullmatch(r"[0-9a-f-]{36}", self.user_id), out
        return self.user_id

    async def inbox_until(
        self, done: Callable[[list[list[str]]], bool], timeout: float = 20.0
    ) -> list[list[str]]:
        """Run ``inbox`` until the messages received so far satisfy ``done`` (an accepted
        send may still be on its way to the device inbox). Rows are the tab fields."""
        rows: list[list[str]] = []
        deadline = time.monotonic() + timeout
        while True:
            out, _ = await self.run("inbox")
            rows += [line.split("\t") for line in out.splitlines()]
            if done(rows):
                return rows
            assert time.monotonic() < deadline, f"{self.phone} only received {rows}"
            await asyncio.sleep(0.3)


def texts(rows: list[list[str]]) -> list[str]:
    return [row[4] for row in rows]


@contextlib.asynccontextmanager
async def platform(tmp_path: Path) -> AsyncIterator[Callable[[str], User]]:
    data = tmp_path / "data"
    async with procs.running(["up"], data, tmp_path / "tidings.log") as proc:

        def user(name: str) -> User:
            return User(proc.url, data, tmp_path / name, new_phone())

        yield user


@dataclass
class Interactive:
    """A running ``tidings chat``: write lines to its stdin, wait for lines it prints."""

    process: asyncio.subprocess.Process
    unread: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first printed line not matched before that matches ``pattern``."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                for i, line in enumerate(self.unread):
                    if match := re.search(pattern, line):
                        del self.unread[i]
                        return match
                raw = await self.process.stdout.readline()
                assert raw, f"chat exited; it printed:\n{''.join(self.printed)}"
                self.printed.append(raw.decode())
                self.unread.append(raw.decode())


@contextlib.asynccontextmanager
async def chatting(user: User, *args: str) -> AsyncIterator[Interactive]:
    """``tidings chat`` for a registered ``user``, killed on the way out if still running."""
    process = await asyncio.create_subprocess_exec(
        procs.TIDINGS,
        "chat",
        *user.options(),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Interactive(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
