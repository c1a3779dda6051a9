"""``tidings chat``: an interactive conversation loop and its commands.

Here the line-based loop (pipes, scripts, ``--plain``): a daemon thread reads stdin into
an asyncio queue, so the WebSocket listener keeps receiving while the user types;
incoming messages, receipts and typing are printed as they arrive. On a terminal,
``chat_tui.TerminalChat`` replaces only the input and the printing, not the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import time
from pathlib import Path

from tidings.client import content, featurecmds, names, outbox, verifying
from tidings.client.account import (
    CommandError,
    holding_socket,
    label,
    open_client,
    people_in,
    register,
    resolve,
    resolve_group,
    search,
    send_file_to,
    shown_text,
    signed_in,
)
from tidings.client.http import ApiError
from tidings.client.outboxcmds import refusal_line
from tidings.client.sdk import Client, Event, UntrustedIdentity
from tidings.client.sending import SHOWN_KINDS
from tidings.client.store import StoredMessage

HELP = f"""\
In the chat, a plain line goes to the open conversation. Commands:
  /to PHONE_OR_ID           open a 1:1 conversation
  /group GROUP              open a group conversation (its id or name)
  /contacts                 your contacts and groups
  /send-file PATH           encrypt, upload and send a file to the open conversation
  /history [N]              the open conversation's last N messages (default 20)
  /search WORDS             search the local history
  /fetch SERVER_ID [PATH]   download, verify and decrypt a received file
  /verify                   the safety number with the open 1:1 conversation
  /verify mark|DIGITS       mark it verified (DIGITS: checked against it first)
  /verify accept            accept the contact's changed identity key
  /verify unmark            mark it unverified again
{featurecmds.CHAT_HELP}
  /help                     this text
  /quit                     leave (so does end of input, Ctrl-D)"""
SWEEP_EVERY_S = 1.0
"""How often the chat removes disappearing messages whose time came while it is open."""


def identity_notice(client: Client, event: Event) -> str:
    """What to tell the user when a contact's identity key changed."""
    who = label(client, event.conversation)
    notice = f"the safety number with {who} changed (a new install, a new phone, or not them)"
    if event.extra.get("was_verified"):
        return (
            f"{notice}; you had verified them, so nothing is sent to them until you compare "
            "the new number (/verify) and accept it (/verify accept)"
        )
    return f"{notice}; compare it with /verify"


def receipt_line(client: Client, event: Event, who: str) -> str | None:
    """A receipt as people read it: only for messages they sent and see (not sender
    keys or notices: internal), one line per receipt however many it covers."""
    mine = []
    for server_id in event.extra.get("message_ids", []):
        message = client.store.message(server_id)
        if message is not None and message.kind in SHOWN_KINDS:
            mine.append(message)
    if not mine:
        return None
    if len(mine) == 1:
        return f"* {event.text} {mine[0].server_id} (by {who})"
    latest = max(mine, key=lambda m: m.timestamp)
    return f"* {event.text}: {len(mine)} messages, up to {latest.server_id} (by {who})"


async def _either(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def say(text: str) -> None:
    print(text, flush=True)


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Thread body: forward stdin lines to the loop; None marks end of input."""
    while True:
        line = sys.stdin.readline()
        try:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n") if line else None)
        except RuntimeError:  # the loop is gone: the chat ended
            return
        if not line:
            return


async def main(args: argparse.Namespace) -> int:
    """Sign in (registering when this home has no account yet), then chat."""
    client = open_client(args)
    try:
        if signed_in(client):
            say(f"signed in as {args.phone} ({client.user_id})")
        else:
            say(f"registered {args.phone} as {await register(client, args)}")
        with holding_socket(client, "tidings chat"):
            try:
                await client.replenish_prekeys()
            except ApiError as exc:
                if not outbox.unreachable(exc):  # offline: the chat says so and queues
                    raise
            return await chat_for(client, args).run(args)
    finally:
        await client.close()


def chat_for(client: Client, args: argparse.Namespace) -> Chat:
    """The terminal UI when both ends are a terminal, else (pipes, scripts, ``--plain``)
    the line-based loop: scripts rely on one line in, one message out."""
    if getattr(args, "plain", False) or not (sys.stdin.isatty() and sys.stdout.isatty()):
        return Chat(client)
    from tidings.client.chat_tui import TerminalChat  # prompt_toolkit: only when used

    return TerminalChat(client)


class Chat:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.open: str | None = None
        """The open conversation: a user id or ``group:GROUP_ID``."""
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()

    async def run(self, args: argparse.Namespace) -> int:
        self._start_input()
        listener = asyncio.create_task(self.client.listen(), name="chat-listen")
        listener.add_done_callback(lambda _: self.lines.put_nowait(None))
        printer = asyncio.create_task(self._print_events(), name="chat-print")
        watcher = asyncio.create_task(self._watch_connection(), name="chat-connection")
        sweeper = asyncio.create_task(self._sweep(), name="chat-sweep")
        try:
            if args.to:
                await self.handle(f"/to {args.to}")
            elif args.group:
                await self.handle(f"/group {args.group}")
            say("type /help for commands")
            while (line := await self.lines.get()) is not None:
                if not await self.handle(line):
                    break
            ended_alone = listener.done()
        finally:
            listener.cancel()
            printer.cancel()
            watcher.cancel()
            sweeper.cancel()
            await asyncio.gather(listener, printer, watcher, sweeper, return_exceptions=True)
        if ended_alone:
            error = None if listener.cancelled() else listener.exception()
            say(f"error: connection lost: {error}" if error else "signed in elsewhere; bye")
            return 1
        say("bye")
        return 0

    def _start_input(self) -> None:
        """Feed :attr:`lines` from stdin, line by line (None at its end)."""
        loop = asyncio.get_running_loop()
        threading.Thread(target=_read_stdin, args=(loop, self.lines), daemon=True).start()

    async def handle(self, line: str) -> bool:
        """Run one input line; False means quit."""
        line = line.strip()
        if not line:
            return True
        try:
            if not line.startswith("/"):
                await self._send(line)
                return True
            command, _, rest = line.partition(" ")
            if command in ("/quit", "/exit"):
                return False
            await self._command(command, rest.strip())
        except UntrustedIdentity as exc:
            say(f"error: {verifying.untrusted(self.client, exc)}")
        except (ApiError, CommandError, OSError) as exc:
            say(f"error: {exc}")
        return True

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            self.client.sweep_expired()

    def _conversation(self) -> str:
        if self.open is None:
            raise CommandError("no conversation open: /to PHONE_OR_ID or /group GROUP")
        return self.open

    async def _send(self, text: str) -> None:
        self._said(await outbox.send_or_queue(self.client, self._conversation(), text))

    def _said(self, sent: outbox.Sent, what: str = "") -> None:
        for refused in sent.refused:
            say(f"! {refusal_line(self.client, refused)}")
        if sent.server_id:
            say(f"sent {what}{sent.server_id}")
        else:
            say(f"queued ({sent.queued} waiting): sent when the server is back")

    async def _watch_connection(self) -> None:
        """Say when the connection drops and when it is back; send the outbox whenever
        it is connected (texts queued by an earlier run or command go out too)."""
        live = self.client.live
        offline = False
        while True:
            await _either(live.connected, live.disconnected)
            if live.connected.is_set():
                if offline or self.client.store.outgoing():
                    await self._flush("back online" if offline else "online")
                offline = False
                await live.disconnected.wait()
            if not offline:
                say("offline: the server cannot be reached; what you type is queued")
                offline = True
            await live.connected.wait()

    async def _flush(self, why: str) -> None:
        try:
            flushed = await outbox.flush(self.client)
        except ApiError as exc:
            waiting = len(self.client.store.outgoing())
            say(f"{why}; {waiting} queued message(s) still waiting: {exc}")
            return
        sent = flushed.sent
        say(f"{why}; {len(sent)} queued message(s) sent" if sent else why)
        for refused in flushed.refused:
            say(f"! {refusal_line(self.client, refused)}")

    async def _send_file(self, path: str) -> None:
        file = await asyncio.to_thread(Path(path).expanduser)  # may read the passwd database
        self._said(await send_file_to(self.client, self._conversation(), file), f"{file.name} ")

    async def _command(self, command: str, arg: str) -> None:
        client = self.client
        if command == "/to" and arg:
            user_id = await resolve(client, arg)
            with contextlib.suppress(ApiError):  # the address book is a convenience
                await client.api.call("PUT", "/v1/contacts", {"user_ids": [user_id]})
            await names.learn_profiles(client.api, client.store, [user_id], refresh=True)
            say(f"talking to {label(client, user_id)}")
            if client.store.trust.blocked(user_id):
                say(f"! {verifying.untrusted(client, UntrustedIdentity(user_id))}")
            await self._open(user_id)
        elif command == "/group" and arg:
            group_id = await resolve_group(client, arg)
            group = await client.group_info(group_id)
            say(f"talking in {group['name']}, {len(group['members'])} members")
            await self._open(f"group:{group_id}")
        elif command == "/send-file" and arg:
            await self._send_file(arg)
        elif command == "/contacts":
            await self._contacts()
        elif command == "/history":
            if self.open is None:
                raise CommandError("no conversation open")
            for message in client.store.history(self.open, int(arg) if arg.isdigit() else 20):
                say(self._describe(message))
        elif command == "/search" and arg:
            for message in search(client, arg):
                say(f"{label(client, message.conversation)}: {self._describe(message)}")
        elif command == "/verify":
            if self.open is None or self.open.startswith("group:"):
                raise CommandError("open a 1:1 conversation first: /to PHONE_OR_ID")
            action, compared = verifying.chat_request(arg)
            say(
                verifying.describe(
                    client, await verifying.apply(client, self.open, action, compared)
                )
            )
        elif command == "/fetch" and arg:
            await self._fetch(*arg.split(maxsplit=1))
        elif command in ("/reply", "/react", "/edit", "/delete", "/timer") and arg:
            say(await featurecmds.apply(client, self.open, command[1:], arg))
        else:
            if command != "/help":
                say(f"unknown command or missing argument: {command}")
            say(HELP)

    async def _contacts(self) -> None:
        client = self.client
        listed = (await client.api.call("GET", "/v1/contacts"))["contacts"]
        talked = client.store.conversations()
        people = [*listed, *(c for c in talked if not c.startswith("group:"))]
        groups = [c.removeprefix("group:") for c in talked if c.startswith("group:")]
        await names.learn_profiles(client.api, client.store, people, refresh=True)
        for user_id in dict.fromkeys(people):
            say(f"contact {user_id} {label(client, user_id)}")
        for group_id in dict.fromkeys(groups):
            say(f"group {group_id} {label(client, 'group:' + group_id)}")

    async def _fetch(self, server_id: str, path: str | None = None) -> None:
        message = self.client.store.message(server_id)
        if message is None or message.kind != "file":
            raise CommandError(f"no file message {server_id} in the local history")
        data = await self.client.fetch_file(message.extra)
        out = Path(path) if path else Path(Path(str(message.extra.get("name", "file"))).name)
        await asyncio.to_thread(out.write_bytes, data)
        say(f"saved {out} ({len(data)} bytes)")

    def _who(self, user_id: str) -> str:
        return "me" if user_id == self.client.user_id else label(self.client, user_id)

    def _describe(self, message: StoredMessage) -> str:
        when = time.strftime("%H:%M", time.localtime(message.timestamp / 1000))
        body = content.decorate(message.text, message.extra)
        if message.kind == "file" and not message.extra.get("deleted"):
            body = f"[file {message.text}, {message.extra.get('size')} bytes]"
        elif message.kind == "identity":
            who = label(self.client, message.conversation)
            return f"{when} ! the safety number with {who} changed"
        elif message.kind in ("notice", "timer"):
            return f"{when} ! {shown_text(self.client, message)}"
        mark = f" ({message.status})" if message.sender_user == self.client.user_id else ""
        return f"{when} {self._who(message.sender_user)}: {body}{mark} {message.server_id}"

    async def _print_events(self) -> None:
        while True:
            event = await self.client.events.get()
            others = [u for u in people_in([event]) if u != self.client.user_id]
            await names.learn_profiles(self.client.api, self.client.store, others)
            line = self._event_line(event)
            if line:
                say(line)
            if event.kind in ("text", "file") and event.conversation == self.open:
                await self._mark_read([(event.sender_user, event.server_id)])

    async def _mark_read(self, seen: list[tuple[str, str]]) -> None:
        """Tell the senders the user saw these messages (``read`` receipts)."""
        by_sender: dict[str, list[str]] = {}
        for sender, server_id in seen:
            by_sender.setdefault(sender, []).append(server_id)
        for sender, server_ids in by_sender.items():
            with contextlib.suppress(ApiError):  # best effort: retried on the next open
                await self.client.mark_read(sender, server_ids)

    async def _open(self, conversation: str) -> None:
        """Open a conversation and mark what arrived there while it was closed as read."""
        self.open = conversation
        unread = [
            (m.sender_user, m.server_id)
            for m in self.client.store.history(conversation, 100)
            if m.status == "received" and m.kind in SHOWN_KINDS
        ]
        await self._mark_read(unread)

    def _event_line(self, event: Event) -> str | None:
        who = self._who(event.sender_user)
        where = ""
        if event.conversation.startswith("group:"):
            where = f"[{label(self.client, event.conversation)}] "
        if event.kind == "text":
            return f"< {where}{who}: {content.decorate(event.text, event.extra)}"
        if event.kind == "file":
            size = event.extra.get("size")
            return (
                f"< {where}{who}: [file {event.text}, {size} bytes] "
                f"/fetch {event.server_id} to save it"
            )
        if event.kind == "receipt":
            return receipt_line(self.client, event, who)
        if event.kind == "notice":
            return f"! {where}{shown_text(self.client, event)}"
        if event.kind == "identity":
            return f"! {identity_notice(self.client, event)}"
        if event.kind in content.CONTROL:
            return featurecmds.event_line(self.client, event, who, where)
        if event.kind == "undecryptable":
            return f"! undecryptable message {event.server_id} from {who}"
        if event.kind == "typing" and event.extra.get("typing") == "started":
            return f"... {who} is typing"
        return None
