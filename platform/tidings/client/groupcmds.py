"""``tidings group ...``: create, list, inspect, change members and roles, rename,
leave, send. GROUP is a group id or the name of a group this device knows.

Every change prints what the members are told (``you added Bob (+15550002)``): the
same encrypted notice their clients show.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tidings.client import names, notices, verifying
from tidings.client.account import (
    CommandError,
    label,
    resolve,
    resolve_group,
    runner,
    signed_in_client,
    value_line,
)
from tidings.client.http import ApiError
from tidings.client.sdk import Client, UntrustedIdentity


async def _said(client: Client, op: str, group_id: str, members: list[str]) -> str:
    await names.learn_profiles(client.api, client.store, members)
    payload = notices.notice(op, group_id, names.group(client.store, group_id), members)
    return notices.describe(
        payload, client.user_id, client.user_id, lambda u: names.person(client.store, u)
    )


async def _list(client: Client, as_json: bool) -> None:
    """``GROUP_ID NAME MEMBERS ROLE``: the groups this device knows (created, opened, or
    told about by a notice), checked with the server (``ROLE`` is ``left`` once this
    account is no longer a member)."""
    known = names.book(client.store, names.GROUPS)
    talked = [c.removeprefix("group:") for c in client.store.conversations() if "group:" in c]
    for group_id in dict.fromkeys([*talked, *known]):
        try:
            info = await client.group_info(group_id)
            members: dict[str, str] = info["members"]
            count, role = len(members), members.get(client.user_id, "left")
        except ApiError as exc:
            if exc.status not in (403, 404):
                raise
            count, role = 0, "left"
        name = names.book(client.store, names.GROUPS).get(group_id, "")
        if as_json:
            print(json.dumps({"group_id": group_id, "name": name, "members": count, "role": role}))
        else:
            print(f"{group_id}\t{name}\t{count}\t{role}", flush=True)


async def _info(client: Client, group_id: str, as_json: bool) -> None:
    """``GROUP_ID NAME``, then ``USER_ID NAME ROLE`` per member (admins first)."""
    info = await client.group_info(group_id)
    members: dict[str, str] = info["members"]
    await names.learn_profiles(client.api, client.store, members)
    ordered = sorted(members, key=lambda u: (members[u] != "admin", label(client, u)))
    if as_json:
        out: dict[str, Any] = {
            "group_id": group_id,
            "name": info["name"],
            "members": [
                {"user_id": u, "name": label(client, u), "role": members[u]} for u in ordered
            ],
        }
        print(json.dumps(out), flush=True)
        return
    print(f"{group_id}\t{info['name']}", flush=True)
    for user_id in ordered:
        who = "you" if user_id == client.user_id else label(client, user_id)
        print(f"{user_id}\t{who}\t{members[user_id]}", flush=True)


async def _group(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        action: str = args.group_command
        if action == "create":
            members = [await resolve(client, m) for m in args.member]
            group_id = await client.create_group(args.name, members)
            print(value_line("group_id", group_id, args.json), flush=True)
            return 0
        if action == "list":
            await _list(client, args.json)
            return 0
        group_id = await resolve_group(client, args.group)
        if action == "info":
            await _info(client, group_id, args.json)
        elif action == "send":
            server_id = await client.send_group_text(group_id, args.text)
            print(value_line("server_id", server_id, args.json), flush=True)
        else:
            said = await _change(client, action, group_id, args)
            print(said, flush=True)
        return 0
    except UntrustedIdentity as exc:
        raise verifying.untrusted(client, exc) from None
    except notices.BadNotice as exc:
        raise CommandError(str(exc)) from None
    finally:
        await client.close()


async def _change(client: Client, action: str, group_id: str, args: argparse.Namespace) -> str:
    """Make a membership or role change; returns what the members are told."""
    if action == "add":
        members = [await resolve(client, m) for m in args.members]
        await client.add_members(group_id, members)
        return await _said(client, "added", group_id, members)
    if action == "remove":
        member = await resolve(client, args.member)
        await client.remove_member(group_id, member)
        return await _said(client, "removed", group_id, [member])
    if action == "admin":
        member = await resolve(client, args.member)
        await client.set_admin(group_id, member, not args.revoke)
        return await _said(client, "member" if args.revoke else "admin", group_id, [member])
    if action == "rename":
        await client.rename_group(group_id, args.name)
        return await _said(client, "renamed", group_id, [])
    if action == "leave":
        await client.leave_group(group_id)
        return await _said(client, "left", group_id, [])
    raise CommandError(f"unknown group command {action!r}")


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    group = sub.add_parser(
        "group",
        help="create, list and inspect groups; change members, admins and the name; send",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gsub = group.add_subparsers(dest="group_command", required=True)

    def command(name: str, helptext: str) -> argparse.ArgumentParser:
        return gsub.add_parser(name, help=helptext, description=helptext, parents=[common])

    def group_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("group", metavar="GROUP", help="group id, or the name of a known group")

    p = command("create", "create a group and tell its members; prints its id")
    p.add_argument("name", help="the group's name (1-100 characters)")
    p.add_argument(
        "--member",
        action="append",
        default=[],
        metavar="USER_ID_OR_PHONE",
        help="a member to add (repeat the option for more)",
    )
    command("list", "the groups you know: GROUP_ID NAME MEMBERS ROLE")
    p = command("info", "a group's name, then its members: USER_ID NAME ROLE")
    group_arg(p)
    p = command("add", "add members (admins only); they and the group are told")
    group_arg(p)
    p.add_argument("members", nargs="+", metavar="USER_ID_OR_PHONE", help="who to add")
    p = command("remove", "remove a member (admins only); they and the group are told")
    group_arg(p)
    p.add_argument("member", metavar="USER_ID_OR_PHONE", help="who to remove")
    p = command("admin", "make a member an admin (admins only); --revoke makes them a member")
    group_arg(p)
    p.add_argument("member", metavar="USER_ID_OR_PHONE", help="the member")
    p.add_argument("--revoke", action="store_true", help="take the admin role away instead")
    p = command("rename", "rename the group for its members (admins only; an encrypted notice)")
    group_arg(p)
    p.add_argument("name", help="the new name (1-100 characters)")
    p = command("leave", "tell the group you leave, then leave it")
    group_arg(p)
    p = command("send", "send a text to a group; prints its server id")
    group_arg(p)
    p.add_argument("text", help="the message")
    group.set_defaults(run=runner(_group), log_level=30)
