"""Running the Tidings image with podman the way Kubernetes runs a pod spec.

``scripts/image run`` adds what this machine needs (runc, explicit ulimits, the host's
network); ``pod_run_args`` turns a Deployment's pod template into the rest: the user
and groups of the pod's ``securityContext``, the container's read-only root, dropped
capabilities and no privilege escalation, its command and args, ``envFrom`` ConfigMaps
and ``secretKeyRef`` variables resolved from what the test passes, and its volumes
(emptyDirs and ConfigMaps as host directories, mounted where the spec mounts them).
Every container shares the host's network, so each gets a port of its own through
``TIDINGS_PORT`` and ``TIDINGS_OPS_PORT`` (in Kubernetes each pod has its own 8080 and
9090).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import IMAGE

Object = Mapping[str, Any]

READY_TIMEOUT = 120.0
"""A platform pod's startup probe allows two minutes (60 x 2 s) before it counts."""


def podman(*args: str, check: bool = True, timeout: float = 60.0) -> str:
    """``scripts/image podman ARGS`` (podman with this machine's runtime flags)."""
    done = subprocess.run(
        [str(IMAGE), "podman", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def image_config(image: str) -> dict[str, Any]:
    """The image's OCI config (``User``, ``Entrypoint``, ``Cmd``, ``Env``, ``Labels``...)."""
    (inspected,) = json.loads(podman("image", "inspect", image))
    config: dict[str, Any] = inspected["Config"]
    return config


def run_once(
    image: str, options: Sequence[str], command: Sequence[str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``podman run --rm OPTIONS IMAGE COMMAND`` to completion."""
    return subprocess.run(
        [str(IMAGE), "run", "--rm", *options, image, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def security_args(pod: Object, container: Object) -> list[str]:
    """podman options for the pod's and the container's ``securityContext``."""
    pod_sc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup", user))
    args: list[str] = []
    if user is not None:
        args += ["--user", f"{user}:{group}"]
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        assert user not in (None, 0), "runAsNonRoot needs a numeric non-root runAsUser here"
    if (fs_group := pod_sc.get("fsGroup")) is not None:
        args += ["--group-add", str(fs_group)]
    if sc.get("readOnlyRootFilesystem"):
        # Kubernetes mounts nothing writable but the pod's volumes: neither may podman.
        args += ["--read-only", "--read-only-tmpfs=false"]
    for cap in (sc.get("capabilities") or {}).get("drop", []):
        args += ["--cap-drop", cap]
    for cap in (sc.get("capabilities") or {}).get("add", []):
        args += ["--cap-add", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    # seccompProfile RuntimeDefault: podman applies its default profile anyway.
    return args


def env_of(
    container: Object,
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: ``envFrom`` first, then
    ``env`` (literal values and ``secretKeyRef`` / ``configMapKeyRef`` references)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif ref := var["valueFrom"].get("secretKeyRef"):
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
        elif ref := var["valueFrom"].get("configMapKeyRef"):
            env[var["name"]] = config_maps[ref["name"]][ref["key"]]
        else:
            raise AssertionError(f"no stand-in for {var['valueFrom']} in these tests")
    return env


def volume_args(
    pod: Object,
    container: Object,
    root: Path,
    config_maps: Mapping[str, Mapping[str, str]],
) -> tuple[list[str], dict[str, Path]]:
    """``-v`` options for the container's volume mounts, and each volume's host dir.
    An emptyDir is an empty world-writable directory (as the kubelet makes it); a
    ConfigMap volume holds one file per key (or per listed item), mode 0644."""
    dirs: dict[str, Path] = {}
    for volume in pod.get("volumes", []):
        path = root / volume["name"]
        path.mkdir(parents=True)
        if "emptyDir" in volume:
            path.chmod(0o777)
        elif cm := volume.get("configMap"):
            data = config_maps[cm["name"]]
            items = cm.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (path / item["path"]).write_text(data[item["key"]])
                (path / item["path"]).chmod(0o644)
            path.chmod(0o755)
        else:
            raise AssertionError(f"no stand-in for volume {volume} in these tests")
        dirs[volume["name"]] = path
    args: list[str] = []
    for mount in container.get("volumeMounts", []):
        mode = "ro" if mount.get("readOnly") else "rw"
        args += ["-v", f"{dirs[mount['name']]}:{mount['mountPath']}:{mode}"]
    return args, dirs


@dataclass
class Container:
    """A detached container of the test's own (removed at the end of its ``running``)."""

    name: str
    url: str
    volumes: dict[str, Path]
    ready_path: str = "/readyz"

    def logs(self, tail: int = 80) -> str:
        out = subprocess.run(
            [str(IMAGE), "podman", "logs", "--tail", str(tail), self.name],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout + out.stderr

    def state(self) -> dict[str, Any]:
        (inspected,) = json.loads(podman("inspect", "--type", "container", self.name))
        found: dict[str, Any] = inspected["State"]
        return found

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll the readiness path until it answers 200, as a readiness probe does;
        fail at once, with the logs, if the container exits."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                answer = httpx.get(self.url + self.ready_path, timeout=5.0)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:300]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            state = self.state()
            if not state["Running"]:
                pytest.fail(
                    f"{self.name} exited ({state['ExitCode']}) before it was ready:\n"
                    + self.logs(),
                    pytrace=False,
                )
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"{self.name} not ready within {timeout:.0f} s (last: {last}):\n" + self.logs(),
                    pytrace=False,
                )
            time.sleep(0.5)

    def stop(self, grace: int = 30) -> int:
        """SIGTERM, as the kubelet stops a pod, SIGKILL after ``grace`` seconds; the exit
        code."""
        podman("stop", "--time", str(grace), self.name, timeout=grace + 30)
        code: int = self.state()["ExitCode"]
        return code


@contextmanager
def running(
    image: str,
    run_args: Sequence[str],
    command: Sequence[str],
    *,
    port: int,
    volumes: dict[str, Path] | None = None,
    ready_path: str = "/readyz",
    label: str = "tidings",
) -> Iterator[Container]:
    """``podman run -d RUN_ARGS IMAGE COMMAND``; the container is removed afterwards."""
    name = f"tidings-test-{label}-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [str(IMAGE), "run", "-d", "--name", name, *run_args, image, *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        subprocess.run([str(IMAGE), "podman", "rm", "-f", name], capture_output=True, timeout=60)
        pytest.fail(f"podman run of {name} failed:\n{done.stderr}", pytrace=False)
    container = Container(name, f"http://127.0.0.1:{port}", volumes or {}, ready_path)
    try:
        yield container
    finally:
        subprocess.run(
            [str(IMAGE), "podman", "rm", "-f", "--time", "5", name],
            capture_output=True,
            timeout=60,
        )


def pod_run(
    deployment: Object,
    root: Path,
    *,
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    env: Mapping[str, str],
) -> tuple[list[str], list[str], dict[str, Path]]:
    """podman run options, the command (entrypoint + args) and the volumes' host dirs of
    a Deployment's one container; ``env`` overrides variables (e.g. ``TIDINGS_PORT``)."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = security_args(pod, container)
    volumes, dirs = volume_args(pod, container, root, config_maps)
    args += volumes
    for key, value in {**env_of(container, config_maps, secrets), **env}.items():
        args += ["-e", f"{key}={value}"]
    # command replaces the image's ENTRYPOINT (and with it its CMD), args its CMD.
    if command := container.get("command"):
        args += ["--entrypoint", json.dumps(command)]
    return args, list(container.get("args", [])), dirs
