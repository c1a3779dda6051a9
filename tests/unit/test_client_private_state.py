"""Local account state is private: directory 0700, database files 0600, fixed at start,
and another user's state refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tidings.client.private_state import ForeignState, private_database, private_file
from tidings.client.store import LocalStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_store_is_created_private(tmp_path: Path) -> None:
    home = tmp_path / "home" / ".tidings"
    store = LocalStore(home / "+15550001.db")
    try:
        store.put("k", b"secret")  # a write: the WAL exists now
        files = sorted(p.name for p in home.iterdir())
        assert files == ["+15550001.db", "+15550001.db-shm", "+15550001.db-wal"]
        assert _mode(home) == 0o700
        assert {name: _mode(home / name) for name in files} == dict.fromkeys(files, 0o600)
    finally:
        store.close()


def test_loose_modes_left_by_an_older_client_are_fixed_at_start(tmp_path: Path) -> None:
    home = tmp_path / ".tidings"
    path = home / "+15550001.db"
    LocalStore(path).close()  # SQLite removes the WAL at the last close
    home.chmod(0o755)
    path.chmod(0o644)
    shm = path.with_name(path.name + "-shm")
    shm.write_bytes(b"")  # a leftover of a crashed client, readable by all
    shm.chmod(0o666)

    store = LocalStore(path)
    try:
        store.put("k", b"secret")
        wal = path.with_name(path.name + "-wal")
        assert (_mode(home), _mode(path), _mode(shm), _mode(wal)) == (0o700,) + (0o600,) * 3
    finally:
        store.close()


def test_state_of_another_user_is_refused_and_left_alone(tmp_path: Path) -> None:
    other_user = os.getuid() + 1  # everything under tmp_path is ours, so it is "theirs"
    home = tmp_path / ".tidings"
    home.mkdir()
    home.chmod(0o755)
    with pytest.raises(ForeignState, match="not to you"):
        private_database(home / "a.db", uid=other_user)
    assert _mode(home) == 0o755  # not ours to change
    assert not (home / "a.db").exists()

    path = home / "b.db"
    path.write_bytes(b"")
    path.chmod(0o644)
    with pytest.raises(ForeignState, match=r"b\.db belongs to user id"):
        private_file(path, create=False, uid=other_user)
    assert _mode(path) == 0o644


def test_a_file_where_the_home_directory_should_be_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("not a directory")
    with pytest.raises(FileExistsError):
        LocalStore(blocker / "x.db")
