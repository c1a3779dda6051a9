"""Group notices: who added, removed, promoted or renamed what, as encrypted payloads.

The server changes a group's members and roles but tells nobody; the client that made
the change sends a notice to the group (sender-key encrypted like any group message),
and one 1:1 to a removed member, who no longer holds the group's new sender key::

    {"t": "group", "op": OP, "group": GROUP_ID, "name": NAME, "members": [USER_ID, ...]}

``OP`` is one of :data:`OPS`. A rename exists only as a notice: the new name is an
encrypted group attribute the server never sees (it keeps the name the group was created
with). This module is pure: it builds, checks and describes payloads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

KIND = "group"
OPS = ("created", "added", "removed", "left", "admin", "member", "renamed")
ADMIN_OPS = frozenset({"created", "added", "removed", "admin", "member", "renamed"})
"""Changes only a group's admins can make (the server refuses the others)."""
MAX_NAME = 100
"""As the server limits group names."""


class BadNotice(ValueError):
    """A group payload that is not a well-formed notice (ignored, never shown)."""


def notice(op: str, group_id: str, name: str, members: Sequence[str] = ()) -> dict[str, Any]:
    if op not in OPS:
        raise BadNotice(f"unknown group notice {op!r}")
    return {"t": KIND, "op": op, "group": group_id, "name": name, "members": list(members)}


def check_name(name: str) -> str:
    """A group name as people may give it: 1 to 100 characters, no control characters."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise BadNotice(f"a group name has 1 to {MAX_NAME} characters")
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):
        raise BadNotice("a group name may not hold control characters or line breaks")
    return name


def parse(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Check a received notice's shape; raises :class:`BadNotice`."""
    op, group_id, name = payload.get("op"), payload.get("group"), payload.get("name", "")
    members = payload.get("members", [])
    if op not in OPS or not isinstance(group_id, str) or not isinstance(name, str):
        raise BadNotice(f"malformed group notice {dict(payload)!r}")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise BadNotice("a group notice's members are user ids")
    if op == "renamed" or name:  # any name shown must be printable: no escape sequences
        check_name(name)
    return {"t": KIND, "op": op, "group": group_id, "name": name, "members": members}


def _listed(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def describe(
    payload: Mapping[str, Any], sender: str, me: str, name_of: Callable[[str], str]
) -> str:
    """One line for people: ``Alice added Bob and you``; "you" for this account."""

    def who(user_id: str) -> str:
        return "you" if user_id == me else name_of(user_id)

    by = who(sender)
    members = _listed([who(m) for m in payload.get("members", [])])
    op, name = payload["op"], payload.get("name", "")
    if op == "created":
        return f"{by} created the group {name!r}" + (f" with {members}" if members else "")
    if op == "added":
        return f"{by} added {members}"
    if op == "removed":
        return f"{by} removed {members}"
    if op == "left":
        return f"{by} left the group"
    if op == "admin":
        return f"{by} made {members} an admin"
    if op == "member":
        return f"{by} made {members} a member (no longer an admin)"
    return f"{by} renamed the group to {name!r}"
