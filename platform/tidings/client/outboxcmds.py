"""``tidings outbox``: what waits for the server (see :mod:`tidings.client.outbox`), and
the outbox's part in the other commands."""

from __future__ import annotations

import argparse
import json
import sys

from tidings.client import outbox, verifying
from tidings.client.account import CommandError, label, signed_in_client, value_line
from tidings.client.http import ApiError
from tidings.client.sdk import Client, UntrustedIdentity


def queued_note(client: Client, waiting: int) -> str:
    return (
        f"{client.api.base_url} cannot be reached: queued ({waiting} waiting in the outbox); "
        "the next `tidings chat`, `inbox` or `send` sends it, or `tidings outbox flush`"
    )


def refusal_line(client: Client, refused: outbox.Refused) -> str:
    """A queued message the server refused: what it was, to whom, and why."""
    error = refused.error
    if isinstance(error, UntrustedIdentity):
        reason = str(verifying.untrusted(client, error))
    else:
        reason = f"{getattr(error, 'code', 'error')}: {error}"
    return f"not sent to {label(client, refused.conversation)}: {refused.text!r}: {reason}"


def report(client: Client, sent: outbox.Sent, as_json: bool) -> None:
    """A command's answer to a send through the outbox: the server id, or ``queued N``
    (and on stderr why and what next); earlier queued messages refused, as warnings."""
    for refused in sent.refused:
        print(f"warning: {refusal_line(client, refused)}", file=sys.stderr)
    if sent.server_id:
        print(value_line("server_id", sent.server_id, as_json), flush=True)
    else:
        print(value_line("queued", str(sent.queued), as_json), flush=True)
        print(queued_note(client, sent.queued), file=sys.stderr, flush=True)


async def flush_quietly(client: Client) -> None:
    """Send what waits in the outbox (``inbox``): say how many went, or why not."""
    if not client.store.outbox.count():
        return
    try:
        flushed = await outbox.flush(client)
    except ApiError:  # unreachable: inbox says so next
        return
    for refused in flushed.refused:
        print(f"warning: {refusal_line(client, refused)}", file=sys.stderr)
    sent = len(flushed.sent)
    print(f"sent {sent} queued message(s) from the outbox", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> int:
    """``outbox``: ``CLIENT_ID CONVERSATION TEXT`` per queued message, oldest first
    (anything but a text says what it is: ``[file, N bytes] NAME``, ``[reply to ID]
    TEXT``...); ``outbox flush`` sends them (``CLIENT_ID SERVER_ID`` each);
    ``outbox drop ID``."""
    client = await signed_in_client(args)
    try:
        if args.outbox_command == "flush":
            flushed = await outbox.flush(client)
            for client_id, server_id in flushed.sent:
                print(f"{client_id}\t{server_id}", flush=True)
            for refused in flushed.refused:
                print(f"error: {refusal_line(client, refused)}", file=sys.stderr)
            return 1 if flushed.refused else 0
        queued = client.store.outbox.entries()
        if args.outbox_command == "drop":
            if args.client_id not in [q.client_id for q in queued]:
                raise CommandError(f"no {args.client_id} in the outbox: `tidings outbox` lists it")
            client.store.outbox.drop(args.client_id)
            return 0
        for entry in queued:
            if args.json:
                line = {
                    "client_id": entry.client_id,
                    "conversation": entry.conversation,
                    "kind": entry.kind,
                    "text": entry.text,
                }
                print(json.dumps(line), flush=True)
            else:
                print(
                    f"{entry.client_id}\t{entry.conversation}\t{outbox.listed(entry)}", flush=True
                )
        return 0
    finally:
        await client.close()
