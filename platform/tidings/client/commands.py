"""Client-side ``tidings`` subcommands (chat, register, send, inbox, files, verify;
groups in :mod:`tidings.client.groupcmds`, devices and backups in
:mod:`tidings.client.devicecmds`).

Scriptable commands print one line per item (``--json``: one JSON object per line):
ids for what they create, and ``SERVER_ID FROM CONVERSATION KIND TEXT`` (tab-separated)
for messages, where CONVERSATION is the peer's user id or ``group:GROUP_ID``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tidings.client import chat as chat_loop
from tidings.client import (
    featurecmds,
    groupcmds,
    names,
    notices,
    outbox,
    outboxcmds,
    verifying,
)
from tidings.client.account import (
    CODE_HELP,
    CommandError,
    add_code_options,
    common_options,
    holding_socket,
    label,
    message_line,
    nested_options,
    open_client,
    people_in,
    register,
    resolve,
    resolve_group,
    runner,
    search,
    send_file_to,
    signed_in_client,
    value_line,
)
from tidings.client.sdk import Client, UntrustedIdentity

TO_HELP = "the recipient: a +phone (E.164) or a user id"
GROUP_HELP = "a group: its id or the name of a group you know"
SHOWN = ("text", "file", "notice", "reaction", "edit", "delete", "timer")
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
    """The conversation to send to: a user id or ``group:ID``."""
    if args.group:
        return "group:" + await resolve_group(client, args.group)
    who: str | None = args.to or args.to_phone
    if who is None:
        raise CommandError("say who: --to USER_ID_OR_PHONE or --group GROUP")
    return await resolve(client, who)


def _warn_identity_changes(client: Client) -> None:
    """A send may have met a contact's new identity key: say so on stderr."""
    while not client.events.empty():
        event = client.events.get_nowait()
        if event.kind == "identity":
            print(f"warning: {chat_loop.identity_notice(client, event)}", file=sys.stderr)


async def _send(args: argparse.Namespace) -> int:
    """Send after what waits in the outbox; queue the text (or reply) when the server
    is down."""

    async def send(client: Client, to: str) -> outbox.Sent:
        if args.reply_to:
            return await featurecmds.reply(client, to, args.reply_to, args.text)
        return await outbox.send_or_queue(client, to, args.text)

    return await _send_to_recipient(args, send)


async def _send_file(args: argparse.Namespace) -> int:
    return await _send_to_recipient(args, lambda client, to: send_file_to(client, to, args.path))


async def _send_to_recipient(
    args: argparse.Namespace, send: Callable[[Client, str], Awaitable[outbox.Sent]]
) -> int:
    """Sign in, send to the command's recipient through the outbox, print the server id
    (or that it is queued); a contact's changed identity key stops the send with what
    to do next."""
    client = await signed_in_client(args)
    try:
        outboxcmds.report(client, await send(client, await _recipient(client, args)), args.json)
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
        await outboxcmds.flush_quietly(client)
        with holding_socket(client, "tidings inbox"):
            async with asyncio.timeout(args.timeout):
                await client.listen(until_queue_empty=True)
        events = []
        while not client.events.empty():
            events.append(client.events.get_nowait())
        shown = [e for e in events if e.kind in SHOWN]
        await names.learn_profiles(client.api, client.store, people_in(shown))
        for event in events:
            if event.kind in SHOWN:
                stored = client.store.message(event.server_id)
                print(message_line(stored or event, args.json, client), flush=True)
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
            print(message_line(message, args.json, client), flush=True)
        return 0
    finally:
        await client.close()


async def _history(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        conversation = None
        if args.group:
            conversation = "group:" + await resolve_group(client, args.group)
        elif args.with_:
            conversation = await resolve(client, args.with_)
        for message in client.store.history(conversation, args.limit):
            print(message_line(message, args.json, client), flush=True)
        return 0
    finally:
        await client.close()


async def _profile(args: argparse.Namespace) -> int:
    """``profile``: ``USER_ID NAME PHONE``; ``profile set-name NAME``: what contacts see
    instead of the number (a name the server holds, like Signal's profile name)."""
    client = await signed_in_client(args)
    try:
        if args.profile_command == "set-name":
            me = await client.api.call("PATCH", "/v1/users/me", {"display_name": args.name})
        else:
            me = await client.api.call("GET", "/v1/users/me")
        names.remember(client.store, names.DISPLAY_NAMES, client.user_id, me["display_name"])
        if args.json:
            print(json.dumps(me), flush=True)
        else:
            print(f"{me['user_id']}\t{me['display_name']}\t{me['phone']}", flush=True)
        return 0
    finally:
        await client.close()


async def _contacts(args: argparse.Namespace) -> int:
    """``contacts``: ``USER_ID NAME`` for the server's contact list and everyone in the
    local history; ``contacts set-name WHO NAME``: a name of your own for a contact."""
    client = await signed_in_client(args)
    try:
        if args.contacts_command == "set-name":
            user_id = await resolve(client, args.who)
            given = args.name.strip()
            if given:
                try:
                    given = notices.check_name(given)
                except notices.BadNotice as exc:
                    raise CommandError(str(exc).replace("a group name", "a name")) from None
            names.remember(client.store, names.CONTACT_NAMES, user_id, given)
            print(f"{user_id}\t{label(client, user_id)}", flush=True)
            return 0
        listed = (await client.api.call("GET", "/v1/contacts"))["contacts"]
        talked = [c for c in client.store.conversations() if not c.startswith("group:")]
        people = list(dict.fromkeys([*listed, *talked]))
        await names.learn_profiles(client.api, client.store, people, refresh=True)
        for user_id in people:
            if args.json:
                print(json.dumps({"user_id": user_id, "name": label(client, user_id)}))
            else:
                print(f"{user_id}\t{label(client, user_id)}", flush=True)
        return 0
    finally:
        await client.close()


def _add_to(p: argparse.ArgumentParser) -> None:
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="USER_ID_OR_PHONE", help=TO_HELP)
    to.add_argument("--to-phone", metavar="PHONE", help=argparse.SUPPRESS)  # the old name
    to.add_argument("--group", metavar="GROUP", help=GROUP_HELP)


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
    first = p.add_mutually_exclusive_group()
    first.add_argument("--to", metavar="USER_ID_OR_PHONE", help=TO_HELP + "; opened first")
    first.add_argument("--group", metavar="GROUP", help=GROUP_HELP + "; opened first")
    p.add_argument(
        "--plain",
        action="store_true",
        help="line-based chat even on a terminal (the default when stdin is not one)",
    )
    p.set_defaults(run=runner(chat_loop.main))

    p = command("register", "register --phone (or sign in again); prints the user id", CODE_HELP)
    add_code_options(p, send_only=True)
    p.set_defaults(run=runner(_register))

    p = command("send", "send a text message; prints its server id")
    _add_to(p)
    p.add_argument("text", help="the message (quote it)")
    p.add_argument(
        "--reply-to",
        metavar="ID",
        help="answer this message (its server id), quoting its start; sent at once, never queued",
    )
    p.set_defaults(run=runner(_send))

    featurecmds.add_parsers(command, _add_to, _recipient)

    p = command(
        "outbox",
        "messages and files waiting for the server (sent, in order, by the next chat, "
        "inbox or send)",
    )
    osub = p.add_subparsers(dest="outbox_command")
    osub.add_parser("flush", parents=[nested_options()], help="send them now")
    drop = osub.add_parser("drop", parents=[nested_options()], help="give up on one")
    drop.add_argument("client_id", help="its id, from `tidings outbox`")
    p.set_defaults(run=runner(outboxcmds.run))

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

    p = command(
        "send-file", "encrypt, upload and send a file; prints its server id (queued offline)"
    )
    _add_to(p)
    p.add_argument("path", type=Path, help="the file to send")
    p.set_defaults(run=runner(_send_file))

    p = command("fetch-file", "download, verify and decrypt a received file")
    p.add_argument("server_id", help="the file message's server id (from inbox)")
    p.add_argument("--out", type=Path, help="where to write it (default: its name)")
    p.set_defaults(run=runner(_fetch_file))

    p = command("search", "full-text search of the local history")
    p.add_argument("query", help="words that must all appear (quote several)")
    p.add_argument("--limit", type=int, default=20, help="at most N results (default %(default)s)")
    p.set_defaults(run=runner(_search))

    p = command("history", "the local history, oldest first")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--with", dest="with_", metavar="USER_ID_OR_PHONE", help="only the 1:1 with +phone or id"
    )
    which.add_argument("--group", metavar="GROUP", help="only this group: its id or known name")
    p.add_argument(
        "--limit", type=int, default=50, help="the last N messages (default %(default)s)"
    )
    p.set_defaults(run=runner(_history))

    groupcmds.add_parser(sub, common)

    p = command("contacts", "your contacts: USER_ID NAME; `contacts set-name WHO NAME` names one")
    csub = p.add_subparsers(dest="contacts_command")
    name = csub.add_parser(
        "set-name",
        parents=[nested_options()],
        help="your own name for a contact, shown instead of their profile name (this device)",
    )
    name.add_argument("who", metavar="USER_ID_OR_PHONE", help="the contact")
    name.add_argument("name", help="e.g. 'Mum'; empty to use their profile name again")
    p.set_defaults(run=runner(_contacts))

    p = command("profile", "your profile: USER_ID NAME PHONE; `profile set-name NAME` sets it")
    psub = p.add_subparsers(dest="profile_command")
    name = psub.add_parser(
        "set-name",
        parents=[nested_options()],
        help="the display name contacts and groups see (up to 64 characters)",
    )
    name.add_argument("name", help="e.g. 'Alice Smith'; empty to clear it")
    p.set_defaults(run=runner(_profile))
