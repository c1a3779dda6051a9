"""The ``Dockerfile`` as text: only what building and running the image here cannot show.

The image itself is built by ``scripts/image build`` and run as the Dockerfile, the
operator and the chart run it in ``test_image.py`` (user, entrypoint, labels, no wheels
or compilers left, every command started for real). What stays here: the default base
a ``docker build`` uses (``scripts/image`` passes its own), the build context (what
``.dockerignore`` lets through for ``docker build .``, what ``scripts/image`` copies and
hashes), and that every component the operator runs is one ``tidings serve`` knows.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from tidings.config import COMPONENTS
from tidings_operator.models.chatregion import REGION_COMPONENTS
from tidings_operator.resources import pushpool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ``ARG`` defaults and the stages of a Dockerfile: instructions with their
    continuation lines joined, comments and blank lines dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            assert [w.upper() for w in words[1:2]] == ["AS"], f"unnamed stage: {line}"
            stages.append(Stage(base=words[0], name=words[2]))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        else:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
    return args, stages


ARGS, STAGES = parse(DOCKERFILE.read_text())
IMAGE_SCRIPT = (ROOT / "scripts" / "image").read_text()
BY_NAME = {stage.name: stage for stage in STAGES}


# --------------------------------------------------------------------------- base


def test_two_stages_on_python_311_slim_by_default() -> None:
    """``docker build .`` uses the official slim image; ``scripts/image`` passes its own
    base (Debian's Python 3.11, no registry here) through the same argument."""
    assert [s.name for s in STAGES] == ["builder", "final"]
    assert ARGS["PYTHON_IMAGE"] == "python:3.11-slim"
    assert all(s.base == "${PYTHON_IMAGE}" for s in STAGES)
    assert '--build-arg "PYTHON_IMAGE=' in IMAGE_SCRIPT


# --------------------------------------------------------------------------- context


def copy_sources() -> list[str]:
    """Every source path of the builder's ``COPY`` instructions."""
    sources: list[str] = []
    for copy in BY_NAME["builder"].all("COPY"):
        *found, _dest = copy.split()
        sources += [source.rstrip("/") for source in found]
    return sources


def test_the_build_context_holds_what_the_builder_copies() -> None:
    """Every ``COPY`` source exists and ``.dockerignore`` keeps none of them out, while
    the virtualenv, the git history and the servers' downloads stay out."""
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def is_ignored(path: str) -> bool:
        parts = Path(path).parts
        return any(
            fnmatch.fnmatch(path, pattern)
            or fnmatch.fnmatch(parts[0], pattern)
            or (pattern.startswith("**/") and any(fnmatch.fnmatch(p, pattern[3:]) for p in parts))
            for pattern in ignored
        )

    for source in copy_sources():
        assert (ROOT / source).exists(), source
        assert not is_ignored(source), f".dockerignore hides {source}"
    for big in (".venv", ".git", ".deps", "tests", "operator/tidings_operator/__pycache__"):
        assert is_ignored(big), big


def test_scripts_image_copies_and_hashes_every_copy_source() -> None:
    """``scripts/image`` builds from a copy of its ``CONTEXT`` list, whose content is the
    image's tag: a ``COPY`` source missing there would fail the build (or, worse, go
    stale in the cache)."""
    (listed,) = re.findall(r"^CONTEXT=\(([^)]*)\)$", IMAGE_SCRIPT, re.MULTILINE)
    context = set(listed.split())
    assert {"Dockerfile", *copy_sources()} <= context


# --------------------------------------------------------------------------- components


def test_every_component_the_operator_runs_is_one_tidings_serves() -> None:
    """The pods run ``tidings serve <component>``: each must be a choice of ``serve``
    (``test_image.py`` starts the region's; the push pools' run with its providers)."""
    served = [*REGION_COMPONENTS, pushpool.COMPONENT]
    assert set(served) <= set(COMPONENTS)
