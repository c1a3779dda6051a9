"""Client-side ``tidings`` subcommands (chat, register, send, inbox, groups, files)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client subcommands; each sets ``run=callable(args) -> int``."""
