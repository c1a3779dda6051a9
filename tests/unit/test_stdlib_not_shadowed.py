"""The repo's platform/ and operator/ folders must not shadow the standard library."""

from __future__ import annotations

import operator
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def test_platform_and_operator_are_the_stdlib_modules() -> None:
    assert callable(platform.system)
    assert isinstance(platform.system(), str)
    assert operator.add(2, 3) == 5
    assert Path(platform.__file__).resolve().parent == STDLIB
    assert operator.__file__ is not None
    assert Path(operator.__file__).resolve().parent == STDLIB


def test_stdlib_wins_even_with_repo_root_first_on_sys_path() -> None:
    """``python -c`` from the repo root puts it first on sys.path."""
    code = (
        "import platform, operator, tidings, tidings_operator; "
        "assert platform.system(); assert operator.add(1, 2) == 3; "
        "print(platform.__file__); print(operator.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert Path(line).resolve().parent == STDLIB
