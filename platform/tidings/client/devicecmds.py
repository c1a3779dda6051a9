"""``tidings link``, ``tidings devices`` and ``tidings backup``: a second device and a
way back after losing one, from the terminal.

Linking (the SDK's provisioning, :mod:`tidings.client.provisioning`): the new device
runs ``tidings link`` and shows a link code (its link request); the primary runs
``tidings devices approve CODE``, which seals the account identity to that code and
leaves it on the server; the waiting ``link`` fetches it, checks it is for the same
number, and becomes device N of the account.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import json
import os
import sys
import time
from pathlib import Path

from tidings.client.account import (
    CommandError,
    nested_options,
    open_client,
    phone_of,
    runner,
    signed_in,
    signed_in_client,
    value_line,
)
from tidings.client.backup import BackupError, decrypt_backup, load_store
from tidings.client.private_state import FILE_MODE
from tidings.client.provisioning import ProvisioningError
from tidings.client.store import LocalStore

LINK_WAIT_S = 600.0
"""As long as the server keeps an approval (the link code's lifetime)."""
PASSPHRASE_ENV = "TIDINGS_BACKUP_PASSPHRASE"


def _tell(text: str) -> None:
    """Guidance goes to stderr: stdout carries what scripts read."""
    print(text, file=sys.stderr, flush=True)


async def _link(args: argparse.Namespace) -> int:
    client = open_client(args)
    try:
        if signed_in(client):
            raise CommandError(
                f"{args.phone} already has an account in {args.home}; link from a new --home"
            )
        request = client.link_request()
        print(request, flush=True)
        _tell(
            "This device's link code is above. On your primary device run:\n"
            f"  tidings devices approve {request}\n"
            f"Waiting for the approval (up to {args.timeout:.0f} s)..."
        )
        try:
            async with asyncio.timeout(args.timeout):
                blob = await client.wait_for_approval(request)
        except TimeoutError:
            raise CommandError(
                f"not approved within {args.timeout:.0f} s; run `tidings link` again"
            ) from None
        try:
            device_id = await client.link(blob, args.name, phone=phone_of(args))
        except ProvisioningError as exc:
            raise CommandError(str(exc)) from None
        _tell(f"linked: this is device {device_id} of {args.phone}")
        print(value_line("device_id", str(device_id), args.json), flush=True)
        return 0
    finally:
        await client.close()


async def _devices(args: argparse.Namespace) -> int:
    client = await signed_in_client(args)
    try:
        action = args.devices_command or "list"
        if action == "approve":
            try:
                await client.approve_link(args.code)
            except ProvisioningError as exc:
                raise CommandError(f"that is not a link code from `tidings link`: {exc}") from None
            _tell("approved: the new device finishes linking on its own")
        elif action == "unlink":
            await client.api.call("DELETE", f"/v1/devices/{args.device_id}")
            if args.device_id == client.device_id:
                _tell("this device is unlinked; its local state here no longer signs in")
            else:
                _tell(f"device {args.device_id} is unlinked and signed out")
        else:
            for device in (await client.api.call("GET", "/v1/devices"))["devices"]:
                print(_device_line(device, client.device_id, args.json), flush=True)
        return 0
    finally:
        await client.close()


def _device_line(device: dict[str, object], this_device: int, as_json: bool) -> str:
    """``ID NAME ROLE LINKED_AT [this device]``, tab-separated, or the API's JSON."""
    mine = device["device_id"] == this_device
    if as_json:
        return json.dumps({**device, "this_device": mine})
    role = "primary" if device["primary"] else "linked"
    created = float(str(device["created_at"]))
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
    fields = [str(device["device_id"]), str(device["name"]), role, when]
    return "\t".join(fields + (["this device"] if mine else []))


def _passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    """From ``--passphrase-file``, ``$TIDINGS_BACKUP_PASSPHRASE`` or a prompt (twice when
    it is new); never from the command line, where other users' ``ps`` would see it."""
    if args.passphrase_file is not None:
        lines = args.passphrase_file.read_text().splitlines()
        phrase = lines[0] if lines else ""
    elif os.environ.get(PASSPHRASE_ENV):
        phrase = os.environ[PASSPHRASE_ENV]
    elif sys.stdin.isatty():
        phrase = getpass.getpass("backup passphrase: ")
        if confirm and getpass.getpass("again: ") != phrase:
            raise CommandError("the two passphrases differ")
    else:
        raise CommandError(
            f"a backup needs a passphrase: --passphrase-file PATH or ${PASSPHRASE_ENV}"
        )
    if len(phrase) < 8:
        raise CommandError("use a backup passphrase of at least 8 characters")
    return phrase


async def _backup(args: argparse.Namespace) -> int:
    path: Path = args.path
    if args.backup_command == "export":
        client = await signed_in_client(args)
        try:
            phrase = _passphrase(args, confirm=True)
            blob = await client.export_backup(phrase)
        finally:
            await client.close()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            raise CommandError(f"{path} exists; choose a new file") from None
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        _tell(f"backup of {args.phone} written to {path} ({len(blob)} bytes)")
        return 0
    await asyncio.to_thread(_restore, args)
    return 0


def _restore(args: argparse.Namespace) -> None:
    """``backup import``: decrypt first (nothing is written on a wrong passphrase or
    for another number), then fill the new store."""
    path: Path = args.path
    phone = phone_of(args)
    target: Path = args.home / f"{phone}.db"
    if not path.is_file():
        raise CommandError(f"{path} is not a file")
    phrase = _passphrase(args, confirm=False)
    try:
        snapshot = decrypt_backup(path.read_bytes(), phrase)
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    found = _backup_phone(snapshot)
    if found != phone:
        raise CommandError(f"{path} is a backup of {found}, not {phone}; nothing was restored")
    store = LocalStore(target)
    try:
        load_store(store, snapshot)
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    _tell(
        f"restored {phone} into {target}. It is the same device as the one backed up: "
        "use one copy only (two would break each other's sessions)"
    )


def _backup_phone(snapshot: dict[str, object]) -> str | None:
    """The number a decrypted backup belongs to (its ``phone`` setting)."""
    tables = snapshot.get("tables")
    rows = tables.get("kv", []) if isinstance(tables, dict) else []
    for key, value in rows:
        if key == "phone":
            raw = base64.b64decode(value["$b"]) if isinstance(value, dict) else value
            found = json.loads(raw)
            return None if found is None else str(found)
    return None


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    quiet = {"log_level": 30}
    p = sub.add_parser(
        "link",
        parents=[common],
        help="make this a linked device of an account: prints a link code, waits for "
        "`tidings devices approve CODE` on the primary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--name", default="linked", help="this device's name (default %(default)s)")
    p.add_argument(
        "--timeout",
        type=float,
        default=LINK_WAIT_S,
        help="seconds to wait for the approval (default %(default)s)",
    )
    p.set_defaults(run=runner(_link), **quiet)

    devices = sub.add_parser(
        "devices",
        parents=[common],
        help="list this account's devices; approve a new one; unlink one",
    )
    dsub = devices.add_subparsers(dest="devices_command")
    nested = nested_options()
    dsub.add_parser("list", parents=[nested], help="ID NAME ROLE LINKED_AT (the default)")
    p = dsub.add_parser("approve", parents=[nested], help="(primary) link the device showing CODE")
    p.add_argument("code", help="the link code `tidings link` printed on the new device")
    p = dsub.add_parser(
        "unlink",
        parents=[nested],
        help="sign a linked device out for good (the primary: any; a linked device: itself)",
    )
    p.add_argument("device_id", type=int, metavar="ID", help="from `tidings devices`")
    devices.set_defaults(run=runner(_devices), **quiet)

    backup = sub.add_parser(
        "backup",
        help="export this device's keys, sessions and history sealed with a passphrase, "
        "or import such a backup",
    )
    bsub = backup.add_subparsers(dest="backup_command", required=True)
    for name, helptext in (
        ("export", "write an encrypted backup to PATH (a new file, mode 0600)"),
        ("import", "restore PATH into --home (which must not hold this account yet)"),
    ):
        p = bsub.add_parser(name, parents=[common], help=helptext, description=helptext)
        p.add_argument("path", type=Path, metavar="PATH", help="the backup file")
        p.add_argument(
            "--passphrase-file",
            type=Path,
            metavar="FILE",
            help=f"read the passphrase from FILE's first line (or set ${PASSPHRASE_ENV}; "
            "on a terminal you are asked)",
        )
    backup.set_defaults(run=runner(_backup), **quiet)
