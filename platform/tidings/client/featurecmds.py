"""Message features on the command line and in the chat: ``tidings react|edit|delete|
timer``, ``send --reply-to`` and ``/reply /react /edit /delete /timer``, and how their
effects read (content in :mod:`tidings.client.content`).

ID is a message's server id: ``send`` prints it, ``history`` and the chat's ``/history``
show it. A reaction, edit or delete goes to the conversation that message is in.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from tidings.client import content, outbox, outboxcmds
from tidings.client.account import CommandError, runner, signed_in_client
from tidings.client.base import Event
from tidings.client.sdk import Client

ID_HELP = "the message's server id (from send, history or inbox)"
TIMER_HELP = (
    "seconds after sending that each new message disappears from every device's history "
    "and search (0 turns it off); applies to everyone in the conversation"
)
CHAT_HELP = """\
  /reply ID TEXT            answer message ID (a server id: /history shows them), quoting it
  /react ID EMOJI           react to message ID; a new reaction replaces yours, /react ID removes it
  /edit ID TEXT             change the text of your message ID (within 24 h)
  /delete ID                delete your message ID for everyone (within 24 h)
  /timer SECONDS            disappearing messages in the open conversation (0: off)"""


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """A change the rules refuse, or malformed input, as a user-facing error."""
    try:
        yield
    except (content.Refused, content.BadContent) as exc:
        raise CommandError(str(exc)) from None


def seconds(text: str) -> int:
    """A timer as typed: whole seconds, 0 for off."""
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a number of seconds (0 turns it off)") from None
    with refusals():
        content.timer(value)
    return value


async def reply(client: Client, conversation: str, reply_to: str, text: str) -> outbox.Sent:
    """Send a reply through the outbox (queued while the server cannot be reached)."""
    with refusals():
        payload = client.reply_content(conversation, reply_to, text)
    return await outbox.send_content_or_queue(client, conversation, payload)


def _line(client: Client, sent: outbox.Sent, done: str) -> str:
    """The chat's answer to a change: ``DONE SERVER_ID``, or queued (and earlier queued
    messages that were refused)."""
    lines = [f"! {outboxcmds.refusal_line(client, r)}" for r in sent.refused]
    if sent.server_id:
        lines.append(f"{done} {sent.server_id}")
    else:
        lines.append(f"queued ({sent.queued} waiting): sent when the server is back")
    return "\n".join(lines)


async def apply(client: Client, conversation: str | None, command: str, arg: str) -> str:
    """Run ``/reply /react /edit /delete /timer`` (``command`` without its slash) with
    the rest of the line; returns the line(s) to print. Each goes through the outbox:
    typed offline, it waits with the texts (a timer then applies to the texts queued
    after it, as it would online)."""
    target, _, rest = arg.partition(" ")
    rest = rest.strip()
    with refusals():
        if command == "timer":
            if conversation is None:
                raise CommandError("no conversation open: /to PHONE_OR_ID or /group GROUP")
            length = seconds(arg)
            sent = await outbox.send_content_or_queue(client, conversation, content.timer(length))
            return _line(client, sent, f"timer set: {content.duration(length)}")
        if not target:
            raise CommandError(f"which message? /{command} ID ... (/history shows ids)")
        if command == "reply":
            if conversation is None:
                raise CommandError("no conversation open: /to PHONE_OR_ID or /group GROUP")
            if not rest:
                raise CommandError("/reply ID TEXT: say something")
            return _line(client, await reply(client, conversation, target, rest), "sent")
        if command == "react":
            where, payload = client.reaction_content(target, rest)
            done = "reacted" if rest else "reaction removed"
        elif command == "edit":
            where, payload = client.edit_content(target, rest)
            done = "edited"
        else:
            where, payload = client.delete_content(target)
            done = "deleted"
        return _line(client, await outbox.send_content_or_queue(client, where, payload), done)


def event_line(client: Client, event: Event, who: str, where: str) -> str | None:
    """A reaction, edit, delete or timer change as it arrives (None for other kinds)."""
    target = client.store.message(str(event.extra.get("target", "")))
    about = f'"{content.excerpt(target.text)}"' if target and target.text else "a message"
    if event.kind == content.REACTION:
        if not event.text:
            return f"* {where}{who} took back their reaction to {about}"
        return f"* {where}{who} reacted {event.text} to {about}"
    if event.kind == content.EDIT:
        return f"* {where}{who} edited a message: {event.text} (edited)"
    if event.kind == content.DELETE:
        return f"* {where}{who} deleted a message (deleted)"
    if event.kind == content.TIMER:
        return f"! {where}{event.text}"
    return None


# subcommands ---------------------------------------------------------------------------
async def _run(
    args: argparse.Namespace, change: Callable[[Client], tuple[str, dict[str, Any]]]
) -> int:
    """Check the change against the local history, then send it through the outbox."""
    client = await signed_in_client(args)
    try:
        with refusals():
            conversation, payload = change(client)
            sent = await outbox.send_content_or_queue(client, conversation, payload)
        outboxcmds.report(client, sent, args.json)
        return 0
    finally:
        await client.close()


async def _react(args: argparse.Namespace) -> int:
    return await _run(args, lambda client: client.reaction_content(args.id, args.emoji))


async def _edit(args: argparse.Namespace) -> int:
    return await _run(args, lambda client: client.edit_content(args.id, args.text))


async def _delete(args: argparse.Namespace) -> int:
    return await _run(args, lambda client: client.delete_content(args.id))


def add_parsers(
    command: Callable[[str, str], argparse.ArgumentParser],
    add_to: Callable[[argparse.ArgumentParser], None],
    recipient: Callable[[Client, argparse.Namespace], Awaitable[str]],
) -> None:
    """``react``, ``edit``, ``delete`` and ``timer``; ``command`` makes a subcommand
    parser, ``add_to`` adds ``--to/--group`` and ``recipient`` reads them."""
    p = command("react", "react to a message with an emoji (yours replaces your last one)")
    p.add_argument("id", metavar="ID", help=ID_HELP)
    p.add_argument("emoji", nargs="?", default="", help="e.g. 👍; leave it out to remove yours")
    p.set_defaults(run=runner(_react))

    p = command("edit", "change the text of a message you sent, for everyone (within 24 h)")
    p.add_argument("id", metavar="ID", help=ID_HELP)
    p.add_argument("text", help="the new text (quote it)")
    p.set_defaults(run=runner(_edit))

    p = command("delete", "delete a message you sent, for everyone (within 24 h)")
    p.add_argument("id", metavar="ID", help=ID_HELP)
    p.set_defaults(run=runner(_delete))

    async def timer(args: argparse.Namespace) -> int:
        length = seconds(args.seconds)  # checked before signing in
        client = await signed_in_client(args)
        try:
            with refusals():
                conversation = await recipient(client, args)
                sent = await outbox.send_content_or_queue(
                    client, conversation, content.timer(length)
                )
            outboxcmds.report(client, sent, args.json)
            return 0
        finally:
            await client.close()

    p = command("timer", "disappearing messages for a conversation: set or turn off")
    add_to(p)
    p.add_argument("seconds", metavar="SECONDS", help=TIMER_HELP)
    p.set_defaults(run=runner(timer))
