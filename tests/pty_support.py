"""Driving a full-screen-ish CLI in a pseudo-terminal: keys in, screen output read back.

The program sees a real terminal (``isatty`` is true, a window size, ``TERM``), so it
takes its terminal code path. What it writes is kept, escape sequences removed, and
searched for expected text: tests wait for a positive signal, bounded, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import struct
import termios
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

# CSI sequences (cursor moves, colours, modes), OSC titles, and two-byte escapes.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]")

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
"""Bracketed paste: how a terminal wraps pasted text for programs that ask for it."""
CURSOR_QUERY = "\x1b[6n"
"""A cursor position request (CPR)."""


def visible(raw: str) -> str:
    return _ESCAPES.sub("", raw).replace("\r", "")


@dataclass
class Terminal:
    process: asyncio.subprocess.Process
    master: int
    raw: str = ""
    _more: asyncio.Event = field(default_factory=asyncio.Event)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the program exited and the slave side closed
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self.master)
        text = chunk.decode(errors="replace")
        for _ in range(text.count(CURSOR_QUERY)):
            # Answer as a terminal would (prompt_toolkit shows its bottom toolbar only
            # once it knows the cursor's row); no screen is emulated: always the top.
            os.write(self.master, b"\x1b[1;1R")
        self.raw += text
        self._more.set()

    @property
    def screen(self) -> str:
        """Everything written so far, without escape sequences."""
        return visible(self.raw)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def paste(self, text: str) -> None:
        self.type(PASTE_START + text + PASTE_END)

    async def expect(self, pattern: str, *, since: int = 0, timeout: float = 20.0) -> int:
        """Wait until ``pattern`` appears in the visible output after position
        ``since``; returns the position where the match ends."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if match := re.compile(pattern).search(self.screen, since):
                        return match.end()
                    assert self.process.returncode is None, f"exited; it showed:\n{self.screen}"
                    self._more.clear()
                    await self._more.wait()
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} in:\n{self.screen[since:]}") from None


@contextlib.asynccontextmanager
async def terminal(*argv: str, rows: int = 30, columns: int = 200) -> AsyncIterator[Terminal]:
    """Run ``argv`` with stdin, stdout and stderr on a new pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = dict(os.environ, TERM="xterm-256color")
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    os.set_blocking(master, False)
    term = Terminal(process, master)
    asyncio.get_running_loop().add_reader(master, term._readable)
    try:
        yield term
    finally:
        asyncio.get_running_loop().remove_reader(master)
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)
