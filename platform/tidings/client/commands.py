"""Client-side ``tidings`` subcommands (chat, register, send, inbox, groups, files,
verify).

Scriptable commands print one line per item (``--json``: one JSON object per line):
ids for what they create, and ``SERVER_ID FROM CONVERSATION KIND TEXT`` (tab-separated)
for messages, where CONVERSATION is the peer's user id or ``group:GROUP_ID``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tidings.client import chat as chat_loop
from tidings.client import verifying
from tidings.client.account import (
    CODE_HELP,
    CommandError,
    add_code_options,
    common_options,
    holding_socket,
    message_line,
    open_client,
    register,
    remember,
    resolve,
    runner,
    search,
    signed_in_client,
    value_line,
)
from tidings.client.sdk import Client, UntrustedIdentity

SHOWN = ("text", "file")
"""Event kinds ``inbox`` prints; receipts only update the local history's status."""


async def _register(args: argparse.Namespace) -> int:
    client = open_client(args)
    try:
        user_id = await register(client, args)
        if args.send_code:
            print(f"code sent to {args.phone}; now run register --code CODE", flush=True)
        else:
            print(value_line("user_id", user_id, args.json), flush=True)
        return 0
    finally:
        await client.close()


async def _recipient(client: Client, args: argparse.Namespace) -> str:
    who: str | None = args.to or args.to_phone
    if who is None:
        raise CommandError("say who: --to USER_ID_OR_PHONE or --to-phone PHONE")
    return await resolve(client, who)


def _warn_identity_changes(client: Client) -> None:
    """A send may have met a contact's new identity key: say so on stderr."""
    while not client.events.empty():
        event = client.events.get_nowait()
        if event.kind == "identity":
            print(f"warning: {chat_loop.identity_notice(client, event)}", file=sys.stderr)


async def _send(args: argparse.Namespace) -> int:
    return await _send_to_recipient(args, lambda client, to: client.send_text(to, args.text))


async def _send_file(args: argparse.Namespace) -> int:
    if not args.path.is_file():
        raise CommandError(f"{args.path} is not a file")
    return await _send_to_recipient(args, lambda client, to: client.send_file(to, args.path))


async def _send_to_recipient(
    args: argparse.Namespace, send: Callable[[Client, str], Awaitable[str]]
) -> int:
    """Sign in, send to the command's recipient, print the server id; a contact's
    changed identity key stops the send with what to do next."""
    client = await signed_in_client(args)
    try:
        server_id = await send(client, await _recipient(client, args))
        print(value_line("server_id", server_id, args.json), flush=True)
        return 0
    except UntrustedIdentity as exc:
        raise verifying.untrusted(client, exc) from None
    finally:
        _warn_identity_changes(client)
        await client.close()


async def _verify(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        print(await verifying.run(client, args), flush=True)
        return 0
    finally:
        await client.close()


async def _inbox(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        with holding_socket(client, "tidings inbox"):
            async with asyncio.timeout(args.timeout):
                await client.listen(until_queue_empty=True)
        while not client.events.empty():
            event = client.events.get_nowait()
            if event.kind in SHOWN:
                stored = client.store.message(event.server_id)
                print(message_line(stored or event, args.json), flush=True)
            elif event.kind == "undecryptable":
                print(f"warning: could not decrypt {event.server_id}", file=sys.stderr)
            elif event.kind == "identity":
                print(f"warning: {chat_loop.identity_notice(client, event)}", file=sys.stderr)
        return 0
    finally:
        await client.close()


async def _fetch_file(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        message = client.store.message(args.server_id)
        if message is None or message.kind != "file":
            raise CommandError(f"no file message {args.server_id} in the local history")
        data = await client.fetch_file(message.extra)
        out: Path = args.out or Path(Path(str(message.extra.get("name", "file"))).name)
        await asyncio.to_thread(out.write_bytes, data)
        print(value_line("path", str(out), args.json), flush=True)
        return 0
    finally:
        await client.close()


async def _search(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        for message in search(client, args.query, args.limit):
            print(message_line(message, args.json), flush=True)
        return 0
    finally:
        await client.close()


async def _history(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        conversation = None
        if args.group:
            conversation = f"group:{args.group}"
        elif args.with_:
            conversation = await resolve(client, args.with_)
        for message in client.store.history(conversation, args.limit):
            print(message_line(message, args.json), flush=True)
        return 0
    finally:
        await client.close()


async def _group(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        action: str = args.group_command
        if action == "create":
            members = [await resolve(client, m) for m in args.member]
            group_id = await client.create_group(args.name, members)
            remember(client, "groups", group_id, args.name)
            print(value_line("group_id", group_id, args.json), flush=True)
        elif action == "add":
            await client.add_members(args.group, [await resolve(client, m) for m in args.members])
        elif action == "remove":
            await client.remove_member(args.group, await resolve(client, args.member))
        else:
            server_id = await client.send_group_text(args.group, args.text)
            print(value_line("server_id", server_id, args.json), flush=True)
        return 0
    except UntrustedIdentity as exc:
        raise verifying.untrusted(client, exc) from None
    finally:
        await client.close()


def _add_to(p: argparse.ArgumentParser) -> None:
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="USER_ID", help="recipient user id (or +phone)")
    to.add_argument("--to-phone", metavar="PHONE", help="recipient phone, looked up")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client subcommands; each sets ``run=callable(args) -> int``."""
    common = common_options()
    quiet = {"log_level": logging.WARNING}

    def command(name: str, helptext: str, epilog: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=helptext,
            description=helptext,
            epilog=epilog,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(**quiet)
        return p

    p = command(
        "chat", "interactive chat: sign in, then talk live", CODE_HELP + "\n\n" + chat_loop.HELP
    )
    add_code_options(p)
    p.add_argument("--to", metavar="USER_ID_OR_PHONE", help="open this conversation first")
    p.add_argument("--group", metavar="GROUP_ID", help="open this group first")
    p.set_defaults(run=runner(chat_loop.main))

    p = command("register", "register --phone (or sign in again); prints the user id", CODE_HELP)
    add_code_options(p, send_only=True)
    p.set_defaults(run=runner(_register))

    p = command("send", "send a text message; prints its server id")
    _add_to(p)
    p.add_argument("text")
    p.set_defaults(run=runner(_send))

    p = command(
        "verify",
        "show the safety number with a contact; mark it verified, or accept a new key",
        verifying.HELP,
    )
    verifying.add_options(p)
    p.set_defaults(run=runner(_verify))

    p = command("inbox", "receive the queued messages, print them, exit")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default %(default)s)")
    p.set_defaults(run=runner(_inbox))

    p = command("send-file", "encrypt, upload and send a file; prints its server id")
    _add_to(p)
    p.add_argument("path", type=Path)
    p.set_defaults(run=runner(_send_file))

    p = command("fetch-file", "download, verify and decrypt a received file")
    p.add_argument("server_id", help="the file message's server id (from inbox)")
    p.add_argument("--out", type=Path, help="where to write it (default: its name)")
    p.set_defaults(run=runner(_fetch_file))

    p = command("search", "full-text search of the local history")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(run=runner(_search))

    p = command("history", "the local history, oldest first")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--with", dest="with_", metavar="USER_ID_OR_PHONE")
    which.add_argument("--group", metavar="GROUP_ID")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(run=runner(_history))

    group = sub.add_parser("group", help="create groups, change members, send to a group")
    gsub = group.add_subparsers(dest="group_command", required=True)
    p = gsub.add_parser("create", help="create a group; prints its id", parents=[common])
    p.add_argument("name")
    p.add_argument("--member", action="append", default=[], metavar="USER_ID_OR_PHONE")
    p = gsub.add_parser("add", help="add members (admins only)", parents=[common])
    p.add_argument("group", metavar="GROUP_ID")
    p.add_argument("members", nargs="+", metavar="USER_ID_OR_PHONE")
    p = gsub.add_parser("remove", help="remove a member (admins only)", parents=[common])
    p.add_argument("group", metavar="GROUP_ID")
    p.add_argument("member", metavar="USER_ID_OR_PHONE")
    p = gsub.add_parser(
        "send", help="send a text to a group; prints its server id", parents=[common]
    )
    p.add_argument("group", metavar="GROUP_ID")
    p.add_argument("text")
    group.set_defaults(run=runner(_group), **quiet)
