"""Group notices as data: built, checked and described without a server."""

from __future__ import annotations

import pytest

from tidings.client import notices

NAMES = {"a": "Alice", "b": "Bob (+15550002)", "c": "Carol"}


def _say(op: str, sender: str = "a", members: tuple[str, ...] = (), name: str = "") -> str:
    payload = notices.parse(notices.notice(op, "g1", name, members))
    return notices.describe(payload, sender, "me", NAMES.get)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("op", "sender", "members", "name", "expected"),
    [
        ("created", "a", ("b", "me"), "team",
         "Alice created the group 'team' with Bob (+15550002) and you"),
        ("added", "me", ("b", "c", "a"), "", "you added Bob (+15550002), Carol and Alice"),
        ("removed", "a", ("me",), "", "Alice removed you"),
        ("left", "c", (), "", "Carol left the group"),
        ("admin", "a", ("b",), "", "Alice made Bob (+15550002) an admin"),
        ("member", "a", ("b",), "", "Alice made Bob (+15550002) a member (no longer an admin)"),
        ("renamed", "a", (), "friends", "Alice renamed the group to 'friends'"),
    ],
)  # fmt: skip
def test_each_notice_reads_as_a_sentence(
    op: str, sender: str, members: tuple[str, ...], name: str, expected: str
) -> None:
    assert _say(op, sender, members, name) == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"t": "group", "op": "exploded", "group": "g1"},
        {"t": "group", "op": "added", "group": 7},
        {"t": "group", "op": "added", "group": "g1", "members": "bob"},
        {"t": "group", "op": "added", "group": "g1", "members": [1]},
        {"t": "group", "op": "renamed", "group": "g1", "name": ""},
        {"t": "group", "op": "renamed", "group": "g1", "name": "two\nlines"},
        {"t": "group", "op": "renamed", "group": "g1", "name": "x" * 101},
        {"t": "group", "op": "created", "group": "g1", "name": "\x1b[2Jcleared"},
    ],
)
def test_malformed_notices_are_refused(payload: dict[str, object]) -> None:
    with pytest.raises(notices.BadNotice):
        notices.parse(payload)


def test_a_name_is_trimmed_and_checked_before_it_is_sent() -> None:
    assert notices.check_name("  friends ") == "friends"
    with pytest.raises(notices.BadNotice, match="control characters"):
        notices.check_name("a\x1bb")
    with pytest.raises(notices.BadNotice):
        notices.notice("exploded", "g1", "")
