"""Names instead of ids, from the local store alone."""

from __future__ import annotations

from pathlib import Path

from tidings.client import names
from tidings.client.store import LocalStore


def test_people_and_groups_are_shown_by_the_names_known(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.db")
    try:
        assert names.person(store, "u1") == "u1"
        names.remember(store, names.PHONES, "u1", "+15550001")
        assert names.person(store, "u1") == "+15550001"
        names.remember(store, names.DISPLAY_NAMES, "u1", "Alice")
        assert names.person(store, "u1") == "Alice (+15550001)"
        names.remember(store, names.DISPLAY_NAMES, "u2", "Bob")
        assert names.conversation(store, "u2") == "Bob"
        names.remember(store, names.DISPLAY_NAMES, "u3", "")  # fetched: no name set
        assert names.person(store, "u3") == "u3"

        names.remember(store, names.CONTACT_NAMES, "u1", "Mum")  # the user's own name wins
        assert names.person(store, "u1") == "Mum (+15550001)"
        names.remember(store, names.CONTACT_NAMES, "u1", "")
        assert names.person(store, "u1") == "Alice (+15550001)"

        assert names.conversation(store, "group:g1") == "group g1"
        names.remember(store, names.GROUPS, "g1", "friends")
        assert names.conversation(store, "group:g1") == "friends"
    finally:
        store.close()
