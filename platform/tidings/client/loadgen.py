"""``tidings bench load``: a load generator on the real SDK."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench``; it sets ``run=callable(args) -> int``."""
