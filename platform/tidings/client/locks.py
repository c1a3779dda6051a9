"""Several ``tidings`` processes on one account's local store, without harm.

Two things must not be done by two processes at once:

- **The device's connection.** The server keeps one WebSocket per device: a second one
  replaces the first (closed with 4001, "connected elsewhere"). The process that
  listens (``chat``, ``inbox``) takes :func:`hold_socket`; another one is told which
  process holds it instead of knocking it off.
- **Ratchet steps.** A send loads a session, advances it and stores it; so does a
  decryption. Interleaved across processes, one would overwrite the other's step and the
  sessions would break. :class:`RatchetLock` serializes them across tasks (an asyncio
  lock) and across processes (``flock`` on a file next to the store).

Both locks are advisory ``flock``\\ s released by the kernel when a process dies, so a
crash never leaves a stale lock behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from tidings.client.private_state import FILE_MODE


class SocketHeld(Exception):
    """Another process on this device holds the connection; the message names it."""


def _open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)


def socket_lock_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".socket.lock")


@contextlib.contextmanager
def hold_socket(store_path: Path, holder: str) -> Iterator[None]:
    """Hold the device's connection for ``holder`` (e.g. ``"tidings chat"``), or raise
    :class:`SocketHeld` naming the process that does."""
    path = socket_lock_path(store_path)
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise SocketHeld(f"{who} holds this device's connection") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


class RatchetLock:
    """Held while sessions are loaded, advanced and stored (``async with lock.held()``)."""

    POLL_S = 0.005

    def __init__(self, store_path: Path) -> None:
        self._path = store_path.with_name(store_path.name + ".ratchet.lock")
        self._tasks = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._tasks:
            fd = _open_lock(self._path)
            try:
                # Polled, not a blocking flock in a thread, so a cancelled waiter leaves
                # nothing behind; another process holds it for one step: milliseconds.
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(self.POLL_S)
                yield
            finally:
                os.close(fd)
