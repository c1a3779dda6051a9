"""``tidings verify`` and ``/verify``: show a safety number, mark it, accept a new key.

Both people run ``tidings verify CONTACT`` (or ``/verify`` in the chat) and compare the
60 digits, in person or over a channel they trust. Equal digits mean each side holds
the other's real identity key; the user then marks the contact verified (``--mark``,
or ``--compare DIGITS`` to have the client check digits read out by the other side).
If a verified contact's key changes, sending to them waits for ``--accept`` (or a new
``--mark`` after comparing the new number).
"""

from __future__ import annotations

import argparse
import json

from tidings.client.account import CommandError, label, resolve
from tidings.client.crypto.fingerprint import display
from tidings.client.sdk import (
    Client,
    SafetyNumber,
    SafetyNumberMismatch,
    Trust,
    UntrustedIdentity,
)

ACTIONS = ("show", "mark", "unmark", "accept")
HELP = """\
Both of you run `tidings verify` with the other's number (or /verify in the chat) and
compare the 60 digits, in person or over a channel you trust. Equal digits mean each
side holds the other's real identity key: mark the contact verified with --mark (or
--compare 'DIGITS' to have the digits read out checked for you). If a verified
contact's key changes, sending to them waits until you compare the new number and
--accept it (or --mark it again)."""

_TRUST_WORDS = {
    Trust.UNVERIFIED: "not verified",
    Trust.VERIFIED: "verified",
    Trust.CHANGED: "CHANGED since you verified it: sending waits until you accept the new key",
}


def describe(client: Client, shown: SafetyNumber) -> str:
    """The safety number as people read it, and what the user did with it."""
    who = label(client, shown.user_id)
    return (
        f"safety number with {who} ({_TRUST_WORDS[shown.trust]}):\n"
        f"{display(shown.digits)}\n"
        f"compare it with the number {who} sees for you"
    )


def as_json(shown: SafetyNumber) -> str:
    return json.dumps(
        {"user_id": shown.user_id, "safety_number": shown.digits, "trust": shown.trust.value}
    )


def untrusted(client: Client, exc: UntrustedIdentity) -> CommandError:
    """The refusal to send, naming the contact as the user knows them."""
    who = label(client, exc.user_id)
    return CommandError(
        f"the safety number with {who} changed since you verified it, so nothing was sent. "
        f"Compare the new number (tidings verify {who}, or /verify in the chat), then accept "
        "the new key (--accept, /verify accept) or mark it verified again"
    )


async def apply(client: Client, user_id: str, action: str, compared: str | None) -> SafetyNumber:
    """Run one verify action; ``compared`` digits make ``mark`` check them first."""
    try:
        if action == "mark":
            return await client.mark_verified(user_id, compared)
        if action == "unmark":
            return await client.unmark_verified(user_id)
        if action == "accept":
            return await client.accept_identity(user_id)
        return await client.safety_number(user_id)
    except (SafetyNumberMismatch, ValueError) as exc:
        raise CommandError(str(exc)) from None


def chat_request(arg: str) -> tuple[str, str | None]:
    """``/verify`` arguments: nothing (show), an action word, or the digits to compare."""
    if not arg:
        return "show", None
    if arg in ACTIONS:
        return arg, None
    if any(ch.isdigit() for ch in arg):
        return "mark", arg
    raise CommandError("usage: /verify [mark|unmark|accept|DIGITS]")


async def run(client: Client, args: argparse.Namespace) -> str:
    """The ``tidings verify`` command's output for ``args``."""
    user_id = await resolve(client, args.contact)
    action = "show"
    if args.mark or args.compare:
        action = "mark"
    elif args.unmark:
        action = "unmark"
    elif args.accept:
        action = "accept"
    shown = await apply(client, user_id, action, args.compare)
    return as_json(shown) if args.json else describe(client, shown)


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("contact", metavar="CONTACT", help="their +phone or user id")
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--mark",
        action="store_true",
        help="mark the contact verified (after comparing the digits yourself)",
    )
    what.add_argument(
        "--compare",
        metavar="DIGITS",
        help="the 60 digits the contact reads out (spaces allowed): marked verified "
        "only if they match",
    )
    what.add_argument("--unmark", action="store_true", help="mark the contact unverified")
    what.add_argument(
        "--accept",
        action="store_true",
        help="accept a verified contact's new identity key without verifying it",
    )
