"""The ``tidings`` command: ``up``, ``serve SERVICE``, ``code``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from tidings.client import account, commands, devicecmds, loadgen
from tidings.config import COMPONENTS, CONFIG_FILE_ENV, Settings, up_components
from tidings.engines.embedded.otp import latest_code


async def _serve(settings: Settings, components: Sequence[str]) -> None:
    # Imported here so client subcommands start without loading the server stack.
    from tidings import server
    from tidings.bootstrap import create_apps

    apps = create_apps(settings, components=components)
    _tune_gc()
    serving = await server.serve(
        apps.client,
        apps.ops,
        host=settings.host,
        port=settings.port,
        ops_port=settings.ops_port,
        log_level=settings.log_level,
        reuse_port=settings.reuse_port,
        data_dir=settings.data_dir,
    )
    running = serving.client
    names = " + ".join(components)
    print(f"Tidings {names} is up: {running.url}", flush=True)
    if "gateway" in components:
        print(f"  WebSocket  ws://{running.host}:{running.port}/v1/ws", flush=True)
        print(f"  API docs   {running.url}/docs", flush=True)
    print(f"  metrics    {serving.ops_url}/metrics", flush=True)
    if "analytics" in components:
        print(f"  analytics  {serving.ops_url}/analytics/daily/YYYY-MM-DD", flush=True)
    print(f"  data       {settings.data_dir.resolve()}", flush=True)
    await serving.wait()


def _tune_gc() -> None:
    """A server holds thousands of long-lived objects per thousand sockets, and the
    cyclic collector walked all of them every few thousand allocations (a connect storm
    spent a fifth of its time there). Objects alive after start-up are frozen out of its
    reach, and young collections run less often; reference counting still frees nearly
    everything at once."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _settings(args: argparse.Namespace) -> Settings:
    if args.config is not None:
        os.environ[CONFIG_FILE_ENV] = str(args.config)
    overrides = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("ops_port", args.ops_port),
            ("data_dir", args.data_dir),
        )
        if v is not None
    }
    return Settings(**overrides)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (uvicorn[standard] brings it): the servers' event loop
    handles every socket, and uvloop's costs about half of asyncio's per I/O event."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] depends on it
        return None
    return uvloop.new_event_loop


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _print_code(phone: str, data_dir: Path | None) -> int:
    """``tidings code``: the latest dev-mode code for ``phone``, or where none was found.
    The data directory is relative to where the server runs, so a miss names the file
    read: run from another directory, the command would otherwise just say "no code"."""
    outbox = (data_dir or Settings().data_dir).resolve() / "otp-outbox.jsonl"
    if not outbox.is_file():
        print(
            f"no one-time codes logged at {outbox}: pass the server's data directory "
            "(--data-dir, or TIDINGS_DATA_DIR; `tidings up` prints it as 'data'), or run "
            "this where the server runs",
            file=sys.stderr,
        )
        return 1
    found = latest_code(outbox, phone)
    if found is None:
        print(
            f"no code was sent to {phone} (looked in {outbox}); request one first", file=sys.stderr
        )
        return 1
    print(found)
    return 0


_REST_MARKUP = (
    (re.compile(r":[a-z]+:`([^`]+)`"), r"\1"),  # :mod:`tidings.client.loadrun`
    (re.compile(r"``(.+?)``", re.DOTALL), r"\1"),  # ``tidings link``
)


def plain(text: str | None) -> str | None:
    """``text`` without the reST markup of a docstring (roles, double backquotes): the
    help shows it as written, and the descriptions are the modules' docstrings."""
    if text is None:
        return None
    for pattern, replacement in _REST_MARKUP:
        text = pattern.sub(replacement, text)
    return text


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Make every description, epilog and help text of ``parser`` and its subcommands
    ``plain``."""
    parser.description = plain(parser.description)
    parser.epilog = plain(parser.epilog)
    for action in parser._actions:
        action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain(choice.help)
            for child in action.choices.values():
                _plain_help(child)


def build_parser() -> argparse.ArgumentParser:
    """Every ``tidings`` command and option (its help is checked by a test)."""
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("up", "run every service in one process on the embedded engines"),
        ("serve", "run one service as its own process (push needs TIDINGS_PUSH_PROVIDERS)"),
    ):
        p = sub.add_parser(name, help=helptext)
        if name == "serve":
            p.add_argument("service", choices=COMPONENTS, help="the service to run")
        p.add_argument("--host", help="the address to listen on (default: the settings')")
        p.add_argument("--port", type=int, help="the client port (0: a free one)")
        p.add_argument(
            "--ops-port", type=int, help="the operations port: /metrics, analytics, health"
        )
        p.add_argument(
            "--data-dir",
            type=Path,
            help="where the embedded engines keep their files (env TIDINGS_DATA_DIR; "
            "default .tidings-data)",
        )
        p.add_argument(
            "--config", type=Path, help="TOML settings file (environment variables override it)"
        )
    code = sub.add_parser("code", help="dev mode: print the latest one-time code sent to PHONE")
    code.add_argument("phone", help="the number the code was sent to, e.g. +15550001")
    code.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the server's data directory, where dev mode logs the codes (default: as the "
        "server resolves it: TIDINGS_DATA_DIR, else .tidings-data in the current directory)",
    )
    commands.add_parsers(sub)
    devicecmds.add_parsers(sub, account.common_options())
    loadgen.add_parser(sub)
    _plain_help(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(  # client commands set log_level=WARNING: their output is the UI
        level=getattr(args, "log_level", logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    if hasattr(args, "run"):
        result: int = args.run(args)
        return result
    if args.command == "code":
        return _print_code(args.phone, args.data_dir)
    settings = _settings(args)
    components = up_components(settings) if args.command == "up" else (args.service,)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it; exiting 0 then tells
    # supervisors the stop was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=_loop_factory()) as runner,
    ):
        runner.run(_serve(settings, components))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
