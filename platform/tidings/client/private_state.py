"""Keeping an account's local state private to the user who owns it.

The store holds the identity private key, session secrets and the decrypted history:
nobody else on the machine may read it. Its directory is made ``0700`` and its files
(the database and SQLite's ``-wal``/``-shm`` companions) ``0600`` every time a store is
opened, so state created before these rules (or loosened by hand, or by a restore with
a lax umask) is fixed at the next start. State owned by another user is refused rather
than changed: it is not ours to chmod, and using it would mix two people's keys.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


class ForeignState(PermissionError):
    """The local state belongs to another user."""


def _check_owner(path: Path, info: os.stat_result, uid: int) -> None:
    if info.st_uid != uid:
        raise ForeignState(
            f"{path} belongs to user id {info.st_uid}, not to you (user id {uid}): refusing "
            "to use another user's keys and history; pass --home with a directory of yours"
        )


def private_dir(path: Path, *, uid: int | None = None) -> None:
    """Create ``path`` (and missing parents) or check it: ours, and mode 0700."""
    owner = os.getuid() if uid is None else uid
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{path} is not a directory")
    _check_owner(path, info, owner)
    if stat.S_IMODE(info.st_mode) != DIR_MODE:
        path.chmod(DIR_MODE)


def private_file(path: Path, *, create: bool, uid: int | None = None) -> None:
    """Check ``path`` is ours with mode 0600 (fixing the mode); with ``create``, make it
    (empty, already 0600) when missing so it is never readable by others, not even for
    the moment between creation and a chmod."""
    owner = os.getuid() if uid is None else uid
    try:
        info = path.stat()
    except FileNotFoundError:
        if not create:
            return
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        info = path.stat()
    _check_owner(path, info, owner)
    if stat.S_IMODE(info.st_mode) != FILE_MODE:
        path.chmod(FILE_MODE)


def private_database(path: Path, *, uid: int | None = None) -> None:
    """The store's directory, its SQLite file and any companion files, made private
    (before SQLite opens them)."""
    private_dir(path.parent, uid=uid)
    private_file(path, create=True, uid=uid)
    private_companions(path, uid=uid)


def private_companions(path: Path, *, uid: int | None = None) -> None:
    """SQLite's companion files of ``path``: SQLite gives them the database's mode, this
    checks it once they exist."""
    for suffix in SQLITE_COMPANIONS:
        private_file(path.with_name(path.name + suffix), create=False, uid=uid)
