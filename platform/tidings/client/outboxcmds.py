"""``tidings outbox``: the texts waiting for the server (see :mod:`tidings.client.outbox`),
and the outbox's part in the other commands."""

from __future__ import annotations

import argparse
import json
import sys

from tidings.client import outbox
from tidings.client.account import CommandError, signed_in_client
from tidings.client.chat import refusal_line
from tidings.client.http import ApiError
from tidings.client.sdk import Client


def queued_note(client: Client, waiting: int) -> str:
    return (
        f"{client.api.base_url} cannot be reached: queued ({waiting} waiting in the outbox); "
        "the next `tidings chat`, `inbox` or `send` sends it, or `tidings outbox flush`"
    )


async def flush_quietly(client: Client) -> None:
    """Send what waits in the outbox (``inbox``): say how many went, or why not."""
    if not client.store.outgoing():
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
    """``outbox``: ``CLIENT_ID CONVERSATION TEXT`` per queued text, oldest first;
    ``outbox flush`` sends them (``CLIENT_ID SERVER_ID`` each); ``outbox drop ID``."""
    client = await signed_in_client(args)
    try:
        if args.outbox_command == "flush":
            flushed = await outbox.flush(client)
            for client_id, server_id in flushed.sent:
                print(f"{client_id}\t{server_id}", flush=True)
            for refused in flushed.refused:
                print(f"error: {refusal_line(client, refused)}", file=sys.stderr)
            return 1 if flushed.refused else 0
        queued = client.store.outgoing()
        if args.outbox_command == "drop":
            if args.client_id not in [c for c, _, _ in queued]:
                raise CommandError(f"no {args.client_id} in the outbox: `tidings outbox` lists it")
            client.store.drop_outgoing(args.client_id)
            return 0
        for client_id, conversation, text in queued:
            if args.json:
                line = {"client_id": client_id, "conversation": conversation, "text": text}
                print(json.dumps(line), flush=True)
            else:
                print(f"{client_id}\t{conversation}\t{text}", flush=True)
        return 0
    finally:
        await client.close()
