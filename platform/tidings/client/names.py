"""Names people see instead of ids: phone numbers, contact and profile names, group names.

All kept in the local store (kv books ``phones``, ``contact_names``, ``display_names`` and
``groups``), so a line of output never waits on the server: phones are remembered when
the user types them, contact names when the user gives them, display names when a
profile is fetched (:func:`learn_profiles`), group names when
a group is created, opened, or renamed by an encrypted notice
(:mod:`tidings.client.notices`): the server knows only the name a group was created with.
"""

from __future__ import annotations

from collections.abc import Iterable

from tidings.client.http import Api, ApiError
from tidings.client.store import LocalStore

PHONES, DISPLAY_NAMES, GROUPS = "phones", "display_names", "groups"
CONTACT_NAMES = "contact_names"
"""Names the user gave contacts on this device (``tidings contacts set-name``): they win
over the contact's own profile name, as an address book's do."""


def book(store: LocalStore, which: str) -> dict[str, str]:
    found: dict[str, str] = store.get_json(which) or {}
    return found


def remember(store: LocalStore, which: str, ident: str, name: str) -> None:
    names = book(store, which)
    if names.get(ident) != name:
        names[ident] = name
        store.put_json(which, names)


def person(store: LocalStore, user_id: str) -> str:
    """``Alice (+15550001)``, ``Alice``, ``+15550001``, or the user id when nothing is known;
    the name is the one the user gave the contact, else the contact's profile name."""
    phone = book(store, PHONES).get(user_id)
    shown = book(store, CONTACT_NAMES).get(user_id) or book(store, DISPLAY_NAMES).get(user_id)
    if shown and phone:
        return f"{shown} ({phone})"
    return shown or phone or user_id


def group(store: LocalStore, group_id: str) -> str:
    return book(store, GROUPS).get(group_id) or f"group {group_id}"


def conversation(store: LocalStore, conv: str) -> str:
    """A user id or ``group:ID`` conversation, as a person or group name."""
    if conv.startswith("group:"):
        return group(store, conv.removeprefix("group:"))
    return person(store, conv)


async def learn_profiles(
    api: Api, store: LocalStore, user_ids: Iterable[str], *, refresh: bool = False
) -> None:
    """Fetch the display names not known yet (all of them with ``refresh``; one request
    per user, best effort: a missing name falls back to the phone or id)."""
    known = book(store, DISPLAY_NAMES)
    for user_id in dict.fromkeys(user_ids):
        if not user_id or (user_id in known and not refresh):
            continue
        try:
            profile = await api.call("GET", f"/v1/users/{user_id}")
        except ApiError as exc:
            if exc.status == 404:  # no such user (any more): do not ask again
                known[user_id] = ""
            continue
        known[user_id] = str(profile.get("display_name") or "")
    store.put_json(DISPLAY_NAMES, known)
