"""The real servers of the tests, through ``scripts/deps`` and ``scripts/kube`` (as
developers and CI run them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / "scripts" / "deps"
KUBE = ROOT / "scripts" / "kube"
IMAGE = ROOT / "scripts" / "image"
CHROMIUM = ROOT / "scripts" / "chromium"

KUBE_UP_TIMEOUT = 3600.0
"""``scripts/kube up`` builds the control plane from source on a cold machine (~20 min)."""

IMAGE_BUILD_TIMEOUT = 900.0
"""``scripts/image build`` on a cold machine: apt, debootstrap and the build (~3 min)."""

CHROMIUM_INSTALL_TIMEOUT = 600.0
"""``scripts/chromium ensure`` on a machine without it: apt-get (~15 s here)."""

ENGINE_SETS = ["embedded", "distributed"]
"""What platform fixtures run on: the embedded engines, and Kafka + Cassandra + Redis + S3."""


def _up(script: Path, args: Sequence[str], timeout: float, verb: str = "up") -> dict[str, str]:
    """``script VERB ARGS`` (idempotent), then its exports (``script env``) as a dict.
    Fails the test, never skips, when it cannot start."""
    name = f"scripts/{script.name}"
    up = subprocess.run(
        [str(script), verb, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if up.returncode != 0:
        pytest.fail(
            f"{name} {verb} {' '.join(args)} failed (exit {up.returncode}):\n"
            f"{up.stdout}{up.stderr}",
            pytrace=False,
        )
    env = subprocess.run([str(script), "env"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if env.returncode != 0:
        pytest.fail(f"{name} env failed:\n{env.stdout}{env.stderr}", pytrace=False)
    return dict(re.findall(r"^export ([A-Z0-9_]+)='([^']*)'$", env.stdout, re.MULTILINE))


def deps_up(service: str) -> dict[str, str]:
    """Start ``service`` with ``scripts/deps`` (idempotent) and return its exported
    settings (``scripts/deps env``). Fails the test, never skips, when it cannot start."""
    return _up(DEPS, [service], timeout=600)


def kube_up() -> dict[str, str]:
    """Start the loopback Kubernetes control plane with ``scripts/kube`` (idempotent; the
    first run on a machine builds it, see ``KUBE_UP_TIMEOUT``) and return its exports:
    ``TIDINGS_KUBECONFIG`` (cluster admin), ``TIDINGS_HELM``, ``TIDINGS_KUBE_VERSION``."""
    return _up(KUBE, [], timeout=KUBE_UP_TIMEOUT)


def real_node_up() -> dict[str, str]:
    """Start the real node with ``scripts/kube node up`` (idempotent: the control plane
    if it is down, containerd, the kubelet, the pause and Tidings images imported) and
    return the exports of ``scripts/kube env``, ``TIDINGS_KUBE_REAL_NODE*`` included."""
    return _up(KUBE, ["up"], timeout=KUBE_UP_TIMEOUT, verb="node")


def image_build() -> dict[str, str]:
    """Build the Tidings image with ``scripts/image build`` (a no-op when the image of
    this source exists; podman, runc and the base are installed and built on first use)
    and return its exports: ``TIDINGS_IMAGE`` (``localhost/tidings:<hash>``)."""
    return _up(IMAGE, [], timeout=IMAGE_BUILD_TIMEOUT, verb="build")


def chromium_ensure() -> str:
    """Debian's Chromium, installed by ``scripts/chromium ensure`` on first use (``make
    deps`` installs it beforehand); its path. Fails the test, never skips, when it cannot
    be installed."""
    name = "scripts/chromium ensure"
    try:
        found = subprocess.run(
            [str(CHROMIUM), "ensure"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=CHROMIUM_INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} took over {CHROMIUM_INSTALL_TIMEOUT:.0f} s", pytrace=False)
    if found.returncode != 0:
        pytest.fail(
            f"{name} failed (exit {found.returncode}):\n{found.stdout}{found.stderr}",
            pytrace=False,
        )
    return found.stdout.strip()


class KubectlError(subprocess.CalledProcessError):
    """A failed ``kubectl``; unlike its base class it shows what kubectl printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


@dataclass(frozen=True)
class KubeEnv:
    """The loopback control plane: an admin kubeconfig and the matching helm binary."""

    kubeconfig: Path
    helm: Path

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        plugins: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl --kubeconfig KUBECONFIG ARGS`` with ``input`` on stdin; raises
        ``KubectlError`` on a non-zero exit when ``check``. ``plugins``: this virtualenv's
        scripts on ``PATH``, where kubectl finds ``kubectl-tidings`` (kubectl takes no
        flags before a plugin's name, so the kubeconfig goes by ``$KUBECONFIG``)."""
        kubectl = shutil.which("kubectl") or "kubectl"
        env = dict(os.environ)
        if plugins:
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            env["KUBECONFIG"] = str(self.kubeconfig)
            cmd = [kubectl, *args]
        else:
            cmd = [kubectl, "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env
        )
        if check and done.returncode != 0:
            raise KubectlError(done.returncode, cmd, done.stdout, done.stderr)
        return done


@dataclass(frozen=True)
class RealNode:
    """The node of ``scripts/kube node up``: a kubelet on containerd + runc that runs real
    containers. Tainted, so a pod lands there only with ``toleration`` (and
    ``node_selector`` keeps it off the kwok nodes); only host-network pods are usable
    (this machine routes only loopback)."""

    name: str
    label: str
    """``KEY=VALUE`` of the node's own label."""
    taint: str
    """``KEY=VALUE:EFFECT`` of its taint."""

    @property
    def node_selector(self) -> dict[str, str]:
        key, _, value = self.label.partition("=")
        return {key: value}

    @property
    def toleration(self) -> dict[str, str]:
        key, _, rest = self.taint.partition("=")
        value, _, effect = rest.partition(":")
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}


def as_settings(env: dict[str, str]) -> dict[str, str]:
    """``TIDINGS_*`` variables as ``Settings`` keyword arguments."""
    return {k.removeprefix("TIDINGS_").lower(): v for k, v in env.items()}


def unique_region() -> str:
    """A region of the test's own: its topics, Redis keys and channels are its alone."""
    return f"t{uuid.uuid4().hex[:12]}"
