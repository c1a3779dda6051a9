"""Every ``tidings`` command and option says what it is for in ``--help``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from tidings import cli


def _parsers(
    parser: argparse.ArgumentParser, path: str = "tidings"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_and_command_has_help() -> None:
    missing = []
    for path, parser in _parsers(cli.build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{path} {n}" for n in action.choices if n not in helped]
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_hidden_aliases_still_parse() -> None:
    args = cli.build_parser().parse_args(["send", "--to-phone", "+15550002", "hi"])
    assert args.to_phone == "+15550002"
    assert args.to is None


def test_every_command_help_formats() -> None:
    """``devices approve --help`` once failed: its options' help names ``%(default)s``,
    and their defaults are suppressed (``account.nested_options``)."""
    for path, parser in _parsers(cli.build_parser()):
        assert parser.format_help(), path


def test_help_is_plain_text_not_rest(capsys: pytest.CaptureFixture[str]) -> None:
    """The descriptions are module docstrings, written in reST: the help shows them
    without double backquotes or roles such as :mod:`x`."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0
    top = capsys.readouterr().out
    assert "The tidings command: up, serve SERVICE, code." in top
    assert "``" not in top
    helps = {path: parser.format_help() for path, parser in _parsers(cli.build_parser())}
    assert [path for path, text in helps.items() if "``" in text or ":mod:" in text] == []


def test_plain_keeps_single_backquotes_and_text() -> None:
    assert cli.plain("run ``tidings link`` (see :mod:`tidings.client`)") == (
        "run tidings link (see tidings.client)"
    )
    assert cli.plain("`tidings devices approve CODE` on the primary") == (
        "`tidings devices approve CODE` on the primary"
    )
    assert cli.plain(None) is None
