"""The ``Dockerfile``: no Docker engine runs here, so what can be checked without one is.

Its stages and the instructions that matter (non-root user, entrypoint, labels, nothing
to compile with in the final stage), that the commands it and its users name (the
operator's pods, the chart) exist, and, the slow part, that its two ``pip`` commands
work: wheels built from the same build context, then installed with ``--no-index`` into
a fresh venv whose ``tidings`` and ``tidings-operator`` run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import pytest

from tidings import cli
from tidings.config import COMPONENTS
from tidings_operator.models.base import ResourceRequirements
from tidings_operator.models.chatregion import REGION_COMPONENTS
from tidings_operator.resources import pods, pushpool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BUILD_TOOLS = ("gcc", "g++", "cc", "clang", "make", "build-essential", "cargo", "rustc")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        (found,) = self.all(keyword)
        return found


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
BY_NAME = {stage.name: stage for stage in STAGES}


def exec_form(args: str) -> list[str]:
    form = json.loads(args)
    assert isinstance(form, list), f"not exec form (signals would not reach the app): {args}"
    return [str(word) for word in form]


def run_commands(stage: Stage) -> list[list[str]]:
    """Each ``RUN``'s shell commands (split on ``&&``), as words, mount flags dropped."""
    commands = []
    for run in stage.all("RUN"):
        words = [w for w in shlex.split(run) if not w.startswith("--mount=")]
        command: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                commands.append(command)
                command = []
            else:
                command.append(word)
    return commands


def pip_command(stage: Stage, verb: str) -> list[str]:
    """The stage's one ``pip <verb> ...`` command (any pip: the base's or the venv's)."""
    (found,) = [
        c for c in run_commands(stage) if len(c) > 1 and Path(c[0]).name == "pip" and c[1] == verb
    ]
    return found


# --------------------------------------------------------------------------- structure


def test_two_stages_on_python_311_slim() -> None:
    assert [s.name for s in STAGES] == ["builder", "final"]
    assert ARGS["PYTHON_IMAGE"] == "python:3.11-slim"
    assert all(s.base == "${PYTHON_IMAGE}" for s in STAGES)
    assert DOCKERFILE.read_text().startswith("# syntax=docker/dockerfile:1\n"), (
        "the final stage bind-mounts the wheels: BuildKit syntax"
    )


def test_builder_makes_wheels_pinned_by_the_constraints() -> None:
    builder = BY_NAME["builder"]
    assert pip_command(builder, "wheel") == [
        "pip",
        "wheel",
        "--wheel-dir",
        "/wheels",
        "-c",
        "constraints.txt",
        ".",
    ]


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

    for copy in BY_NAME["builder"].all("COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not is_ignored(source.rstrip("/")), f".dockerignore hides {source}"
    for big in (".venv", ".git", ".deps", "tests", "operator/tidings_operator/__pycache__"):
        assert is_ignored(big), big


def test_final_stage_runs_as_a_non_root_user() -> None:
    final = BY_NAME["final"]
    user = final.all("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid == "10001", "numeric, so runAsNonRoot can verify it"
    assert gid in ("", "10001")
    assert uid == str(pods.RUN_AS), "the operator's pods run as the image's user"
    created = " ".join(" ".join(c) for c in run_commands(final))
    assert "useradd --system --uid 10001 --gid 10001" in created
    assert "groupadd --system --gid 10001 tidings" in created


def test_final_stage_has_no_build_tools_and_no_caches() -> None:
    final = BY_NAME["final"]
    for command in run_commands(final):
        assert command[0] not in ("apt-get", "apt", "apk", "dnf", "yum"), command
        assert not set(command) & set(BUILD_TOOLS), command
    assert pip_command(final, "install") == [
        "/opt/tidings/bin/pip",
        "install",
        "--no-cache-dir",
        "--no-index",
        "--find-links",
        "/wheels",
        "tidings",
    ]
    # The wheels are bind-mounted from the builder for the one RUN, never copied in.
    assert not [c for c in final.all("COPY") if "--from" in c]
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in final.one("RUN")
    assert "python -m venv /opt/tidings" in final.one("RUN")
    assert "PATH=/opt/tidings/bin:$PATH" in final.one("ENV")


def test_entrypoint_command_port_and_labels() -> None:
    final = BY_NAME["final"]
    assert exec_form(final.one("ENTRYPOINT")) == ["tidings"]
    assert exec_form(final.one("CMD")) == ["up"]
    assert final.one("EXPOSE") == "8080"
    labels = dict(
        re.findall(r"(org\.opencontainers\.image\.[a-z.]+)=\"([^\"]*)\"", final.one("LABEL"))
    )
    assert {"title", "description", "version", "revision"} <= {
        key.removeprefix("org.opencontainers.image.") for key in labels
    }
    env = final.one("ENV")
    for setting in (
        "TIDINGS_HOST=0.0.0.0",
        "TIDINGS_PORT=8080",
        f"TIDINGS_DATA_DIR={pods.DATA_DIR}",
    ):
        assert setting in env


# --------------------------------------------------------------------------- entrypoints


def test_every_command_the_image_is_run_with_is_a_console_script() -> None:
    """The image's entrypoint, the chart's operator command and the operator's platform
    pods all name console scripts of this project, which resolve to functions."""
    chart = (ROOT / "charts" / "tidings" / "templates" / "deployment.yaml").read_text()
    (chart_command,) = re.findall(r"^\s*command: (\[.*\])$", chart, re.MULTILINE)
    container = pods.container(
        "gateway",
        image="tidings:test",
        pull_policy="IfNotPresent",
        env_from_config_map="settings",
        env=[],
        resources=ResourceRequirements(),
    )
    commands = {
        "image": exec_form(BY_NAME["final"].one("ENTRYPOINT")),
        "chart": exec_form(chart_command),
        "pods": container["command"],
    }
    assert commands["chart"] == ["tidings-operator", "run"]
    assert commands["pods"] == ["tidings"]
    for origin, command in commands.items():
        assert command[0] in SCRIPTS, f"{origin}: {command[0]} is no console script"
    for target in SCRIPTS.values():
        module, _, function = target.partition(":")
        assert callable(getattr(import_module(module), function)), target


def test_every_component_the_operator_runs_is_one_tidings_serves() -> None:
    """The pods run ``tidings serve <component>``: each must be a choice of ``serve``."""
    served = [*REGION_COMPONENTS, pushpool.COMPONENT]
    assert set(served) <= set(COMPONENTS)


@pytest.mark.parametrize("argv", [["up", "--help"], ["serve", "gateway", "--help"]])
def test_the_default_command_and_serve_parse(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    assert "--data-dir" in capsys.readouterr().out


# --------------------------------------------------------------------------- install


def build_context(dest: Path) -> Path:
    """What the builder stage's ``COPY`` instructions put in its ``WORKDIR``."""
    for copy in BY_NAME["builder"].all("COPY"):
        *sources, target = copy.split()
        for source in sources:
            src = ROOT / source
            out = dest / target if target != "./" else dest / src.name
            if src.is_dir():
                shutil.copytree(
                    src, out, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
                )
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)
    return dest


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_image_install_commands_work_in_a_clean_venv(tmp_path: Path) -> None:
    """The builder's ``pip wheel`` on a copy of the build context (pip's cache makes a
    warm run quick), then the final stage's ``--no-index`` install into a fresh venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    context = build_context(tmp_path / "src")
    wheels = tmp_path / "wheels"
    wheel = [str(wheels) if w == "/wheels" else w for w in pip_command(BY_NAME["builder"], "wheel")]
    built = subprocess.run(
        [sys.executable, "-m", *wheel], cwd=context, env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    names = sorted(p.name for p in wheels.glob("*.whl"))
    assert any(n.startswith("tidings-0.1.0-") for n in names), names
    # A wheel compiled here would be tagged plain linux_*: the builder has no compiler.
    assert not [n for n in names if re.search(r"-linux_[a-z0-9_]+\.whl$", n)], names

    venv = tmp_path / "opt-tidings"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    moved = {"/opt/tidings/bin/pip": str(venv / "bin" / "pip"), "/wheels": str(wheels)}
    install = [moved.get(word, word) for word in pip_command(BY_NAME["final"], "install")]
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

    for script in SCRIPTS:
        helped = subprocess.run(
            [str(venv / "bin" / script), "--help"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert helped.returncode == 0, helped.stdout + helped.stderr
        # A kubectl plugin names itself as kubectl shows it: `kubectl-tidings` is
        # `kubectl tidings`.
        assert f"usage: {script.replace('kubectl-', 'kubectl ')}" in helped.stdout
    operator_run = subprocess.run(
        [str(venv / "bin" / "tidings-operator"), "run", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert operator_run.returncode == 0, operator_run.stderr
    for option in ("--namespace", "--all-namespaces", "--peering", "--standalone"):
        assert option in operator_run.stdout
