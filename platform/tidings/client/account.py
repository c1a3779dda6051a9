"""Plumbing shared by the client subcommands: options, the local account, codes, output.

Local state of an account lives in ``<home>/<phone>.db`` (``--home``, env
``TIDINGS_HOME``, default ``~/.tidings``); the server is ``--server`` (env
``TIDINGS_SERVER``, default ``http://127.0.0.1:8080``, what ``make up`` serves).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import sqlite3
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any

from tidings.client import content, names, notices, outbox
from tidings.client.http import ApiError
from tidings.client.locks import SocketHeld, hold_socket
from tidings.client.sdk import Client, Event
from tidings.client.sending import FileTooLarge
from tidings.client.store import StoredMessage, fts_query

DEFAULT_SERVER = "http://127.0.0.1:8080"
CODE_WAIT_S = 600.0
_PHONE = re.compile(r"^\+[1-9][0-9]{3,14}$")
_SECRET_FIELDS = ("key", "digest")

CODE_HELP = """\
Registration needs the one-time code texted to PHONE. On a terminal you are asked for
it. Scripts pick one source: --code-command CMD runs CMD once the code was sent and
reads the code from its last line of output ({phone} in CMD becomes the number; against
`make up` in dev mode: --code-command 'tidings code {phone} --data-dir .tidings-data');
--code-file PATH reads it from PATH (waiting until it is written); or two steps:
`register --send-code`, then `register --code CODE`."""


class CommandError(Exception):
    """A user-facing failure: printed as ``error: ...``, exit status 1."""


def common_options() -> argparse.ArgumentParser:
    """The options every client subcommand takes (``parents=[common_options()]``)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--server",
        default=os.environ.get("TIDINGS_SERVER", DEFAULT_SERVER),
        help="gateway URL, or several separated by commas (one per region, say): a "
        "refused connection moves on to the next, and the client moves to the region "
        "serving the account (env TIDINGS_SERVER; default %(default)s)",
    )
    p.add_argument(
        "--phone",
        default=os.environ.get("TIDINGS_PHONE"),
        help="your account's number in E.164, e.g. +15550001 (env TIDINGS_PHONE)",
    )
    p.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("TIDINGS_HOME", "~/.tidings")).expanduser(),
        help="directory of local account state, one SQLite file per phone "
        "(env TIDINGS_HOME; default ~/.tidings)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    return p


def nested_options() -> argparse.ArgumentParser:
    """:func:`common_options` for the subcommands of a command that takes them too
    (``devices approve``): their defaults are suppressed, so an option given before the
    subcommand (``devices --phone P approve``) is not reset by the subcommand's default.
    A help that names its default names it as written (argparse has none to show for a
    suppressed default, and ``--help`` would fail)."""
    p = common_options()
    for action in p._actions:
        if action.help and action.default is not None:
            shown = str(action.default).replace("%", "%%")
            action.help = action.help.replace("%(default)s", shown)
        action.default = argparse.SUPPRESS
    return p


def add_code_options(p: argparse.ArgumentParser, *, send_only: bool = False) -> None:
    """Where the one-time code comes from when this command has to register."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--code-command", metavar="CMD", help="shell command printing the code")
    group.add_argument("--code-file", type=Path, metavar="PATH", help="file holding the code")
    group.add_argument("--code", help="a code already sent by `register --send-code`")
    if send_only:
        group.add_argument(
            "--send-code", action="store_true", help="only request a code, then exit"
        )


def runner(main: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]) -> Callable[..., int]:
    """Wrap an async command: run it, turn refusals into ``error: ...`` and status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(main(args))
        except ApiError as exc:
            print(f"error: {exc.code}: {exc}", file=sys.stderr)
        except TimeoutError:  # before OSError, its base class
            print(f"error: no answer from {args.server} in time", file=sys.stderr)
        except (CommandError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            return 130
        return 1

    return run


def phone_of(args: argparse.Namespace) -> str:
    phone: str | None = args.phone
    if not phone:
        raise CommandError("which account? pass --phone +NUMBER (or set TIDINGS_PHONE)")
    if not _PHONE.match(phone):
        raise CommandError(f"{phone!r} is not an E.164 number like +15550001")
    return phone


def open_client(args: argparse.Namespace) -> Client:
    """The SDK client on this account's local store (not necessarily registered)."""
    home: Path = args.home
    return Client(args.server, home / f"{phone_of(args)}.db")


def signed_in(client: Client) -> bool:
    return client.api.tokens is not None and client.keys is not None


def require_account(client: Client, args: argparse.Namespace) -> None:
    if not signed_in(client):
        raise CommandError(
            f"no account for {args.phone} in {args.home}; "
            f"run `tidings register --phone {args.phone}` first"
        )


@contextlib.contextmanager
def holding_socket(client: Client, holder: str) -> Iterator[None]:
    """Hold this device's connection (see :mod:`tidings.client.locks`), or say plainly
    which process does instead of knocking it offline."""
    try:
        with hold_socket(client.store.path, holder):
            yield
    except SocketHeld as exc:
        raise CommandError(
            f"{exc}: the server keeps one connection per device, so messages arrive "
            "there (and stay in the history here: `tidings history`). Quit it to use "
            f"{holder}, or link another device (`tidings link`)"
        ) from None


async def signed_in_client(args: argparse.Namespace) -> Client:
    """The client of ``--phone``, refusing (with what to run) when it has no account."""
    client = open_client(args)
    try:
        require_account(client, args)
        client.sweep_expired()  # nothing past its timer is shown or searched
    except BaseException:
        await client.close()
        raise
    return client


def _code_source(args: argparse.Namespace) -> Callable[[str], Awaitable[str]]:
    if args.code:
        given: str = args.code

        async def fixed(phone: str) -> str:
            return given

        return fixed
    if args.code_command:
        template: str = args.code_command

        async def command(phone: str) -> str:
            cmd = template.replace("{phone}", shlex.quote(phone))
            proc = await asyncio.create_subprocess_shell(
                cmd, stdout=asyncio.subprocess.PIPE, env=dict(os.environ, TIDINGS_PHONE=phone)
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            lines = [line.strip() for line in out.decode().splitlines() if line.strip()]
            if proc.returncode != 0 or not lines:
                raise CommandError(f"--code-command exited {proc.returncode} without a code")
            return lines[-1]

        return command
    if args.code_file:
        path: Path = args.code_file

        def read() -> str:
            return path.read_text().strip() if path.exists() else ""

        async def from_file(phone: str) -> str:
            deadline = time.monotonic() + CODE_WAIT_S
            while not (code := await asyncio.to_thread(read)):
                if time.monotonic() > deadline:
                    raise CommandError(f"no code appeared in {path}")
                await asyncio.sleep(0.2)
            return code.split()[0]

        return from_file
    if sys.stdin.isatty():

        async def prompt(phone: str) -> str:
            return (await asyncio.to_thread(input, f"one-time code sent to {phone}: ")).strip()

        return prompt
    raise CommandError("registration needs the one-time code.\n" + CODE_HELP)


async def register(client: Client, args: argparse.Namespace) -> str:
    """Register (or sign in again as device 1 of) ``--phone``; returns the user id."""
    phone = phone_of(args)
    if getattr(args, "send_code", False):
        await client.api.request_code(phone)
        return ""
    source = _code_source(args)
    return await client.register(phone, source, request_code=not args.code)


# names: phones, display names and group names this device knows ---------------------
def remember(client: Client, key: str, ident: str, label: str) -> None:
    names.remember(client.store, key, ident, label)


def known(client: Client, key: str) -> dict[str, str]:
    return names.book(client.store, key)


def check_contact(who: str) -> None:
    """Refuse what is neither an E.164 number nor a user id before asking the server,
    saying how to write a number (``5550002`` is not one: it lacks ``+`` and a country
    code)."""
    if _PHONE.match(who):
        return
    digits = who.lstrip("+").replace(" ", "").replace("-", "")
    if who.startswith("+") or digits.isdigit():
        raise CommandError(
            f"{who!r} is not an E.164 number: write + then the country code and the "
            "number, without spaces, e.g. +15550002"
        )
    try:
        uuid.UUID(who)
    except ValueError:
        raise CommandError(
            f"{who!r} is neither a phone number (+15550002) nor a user id (a UUID)"
        ) from None


async def resolve(client: Client, who: str) -> str:
    """A user id from an id or an E.164 phone number (looked up in the directory)."""
    check_contact(who)
    if not who.startswith("+"):
        return who
    try:
        found = await client.lookup([who])
    except ApiError as exc:
        if exc.status != 0:
            raise
        # offline: a number this device already knows needs no lookup (the outbox)
        known_ids = [uid for uid, phone in known(client, "phones").items() if phone == who]
        if known_ids:
            return known_ids[0]
        raise CommandError(
            f"{client.api.base_url} cannot be reached to look up {who}; "
            "try again once it can (numbers you wrote to before work offline)"
        ) from None
    if who not in found:
        raise CommandError(f"{who} is not registered with Tidings")
    remember(client, "phones", found[who], who)
    return found[who]


def label(client: Client, conversation: str) -> str:
    """How to show a user or ``group:ID`` conversation: names when known (phone, profile
    display name, group name), else the id."""
    return names.conversation(client.store, conversation)


async def resolve_group(client: Client, text: str) -> str:
    """A group id from an id or the name of a group this device knows."""
    groups = known(client, names.GROUPS)
    if text in groups:
        return text
    named = [gid for gid, name in groups.items() if name == text]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise CommandError(f"{len(named)} groups are named {text!r}: give the id (`group list`)")
    try:
        uuid.UUID(text)
    except ValueError:
        raise CommandError(
            f"no group named {text!r} here: `tidings group list` shows the groups you know"
        ) from None
    return text


async def send_text_to(client: Client, conversation: str, text: str) -> str:
    """Send ``text`` to a user id or ``group:ID`` conversation; returns the server id."""
    if conversation.startswith("group:"):
        return await client.send_group_text(conversation.removeprefix("group:"), text)
    return await client.send_text(conversation, text)


async def send_file_to(client: Client, conversation: str, path: Path) -> outbox.Sent:
    """Send a file after what waits in the outbox, or queue it (read and encrypted now)
    when the server cannot be reached."""
    if not await asyncio.to_thread(path.is_file):
        raise CommandError(f"{path} is not a file")
    try:
        return await outbox.send_file_or_queue(client, conversation, path)
    except FileTooLarge as exc:
        raise CommandError(str(exc)) from None


# output ------------------------------------------------------------------------------
def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def shown_text(client: Client, message: StoredMessage | Event) -> str:
    """A message's text; a group notice is described again with the names known now
    (at arrival the sender's profile may not have been fetched yet)."""
    if message.kind == "notice" and "op" in message.extra:
        me = client.user_id

        def name_of(user_id: str) -> str:
            return names.person(client.store, user_id)

        return notices.describe(message.extra, message.sender_user, me, name_of)
    if message.kind in ("text", "file"):
        return content.decorate(message.text, message.extra)
    return message.text


def people_in(messages: Iterable[StoredMessage | Event]) -> list[str]:
    """Everyone a line about these messages may name: senders and notices' members."""
    found: list[str] = []
    for message in messages:
        found.append(message.sender_user)
        if message.kind == "notice":
            found.extend(message.extra.get("members", []))
    return found


def message_line(
    message: StoredMessage | Event, as_json: bool, client: Client | None = None
) -> str:
    """One message as a tab-separated line (SERVER_ID FROM CONVERSATION KIND TEXT) or JSON
    (with ``from_name`` and ``conversation_name`` when ``client`` is given)."""
    text = message.text if client is None else shown_text(client, message)
    if as_json:
        out: dict[str, Any] = {
            "server_id": message.server_id,
            "from": message.sender_user,
            "device": message.sender_device,
            "conversation": message.conversation,
            "kind": message.kind,
            "text": text,
        }
        if client is not None:
            out["from_name"] = names.person(client.store, message.sender_user)
            out["conversation_name"] = names.conversation(client.store, message.conversation)
        if isinstance(message, StoredMessage):
            out.update(timestamp=message.timestamp, status=message.status)
        out.update({k: v for k, v in message.extra.items() if k not in _SECRET_FIELDS})
        return json.dumps(out)
    fields = (message.server_id, message.sender_user, message.conversation, message.kind)
    return "\t".join((*fields, _escape(text)))


def search(client: Client, words: str, limit: int = 20) -> list[StoredMessage]:
    """Full-text search of the local history for messages with all of ``words``."""
    if not fts_query(words):
        raise CommandError(f"nothing to search for in {words!r}: give a word or a number")
    try:
        return client.store.search(words, limit)
    except sqlite3.OperationalError as exc:  # quoted terms: should not happen
        raise CommandError(f"could not search for {words!r}: {exc}") from None


def value_line(name: str, value: str, as_json: bool) -> str:
    return json.dumps({name: value}) if as_json else value
