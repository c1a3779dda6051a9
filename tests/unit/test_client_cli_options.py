"""The client commands' options parse wherever they are given: before or after a
nested subcommand (``devices --phone P approve CODE`` and ``devices approve CODE --phone
P``), with the environment's defaults when not given at all."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tidings.client import commands, devicecmds
from tidings.client.account import common_options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_parsers(sub)
    devicecmds.add_parsers(sub, common_options())
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        ["devices", "--phone", "+15550001", "--home", "/h", "approve", "CODE"],
        ["devices", "approve", "CODE", "--phone", "+15550001", "--home", "/h"],
        ["devices", "--phone", "+15550001", "approve", "CODE", "--home", "/h"],
    ],
)
def test_options_before_or_after_a_nested_subcommand(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert (args.devices_command, args.code) == ("approve", "CODE")
    assert (args.phone, args.home) == ("+15550001", Path("/h"))


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_PHONE", "+15550009")
    for argv in (["profile", "set-name", "Ann"], ["contacts"], ["devices", "unlink", "2"]):
        args = _parser().parse_args(argv)
        assert args.phone == "+15550009", argv
        assert args.server.startswith("http"), argv
