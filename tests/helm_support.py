"""Running the ``helm`` that ``scripts/kube`` builds against the chart in ``charts/tidings``."""

from __future__ import annotations

import functools
import json
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servers import ROOT, KubeEnv

CHART = ROOT / "charts" / "tidings"
CHART_CRDS = CHART / "crds"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

Object = dict[str, Any]


@dataclass(frozen=True)
class Helm:
    """``helm`` with its config, cache and data homes in a directory of the test session's
    own (nothing read from or written to the user's), talking to the test cluster."""

    kube: KubeEnv
    home: Path

    def run(
        self, *args: str, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.kube.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
        }
        cmd = [str(self.kube.helm), *args]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def values_file(self, values: Mapping[str, Any]) -> str:
        path = self.home / f"values-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(json.dumps(values))
        return str(path)

    def template_text(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "tidings",
        namespace: str = "tidings-system",
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        # The cluster's version, not helm's default: a helm built without release ldflags
        # (as scripts/kube builds it) assumes v1.20, below the chart's kubeVersion.
        args = ["template", release, str(CHART), "--namespace", namespace]
        args += ["--kube-version", server_version(self.kube)]
        if values is not None:
            args += ["--values", self.values_file(values)]
        return self.run(*args, check=check)

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "tidings",
        namespace: str = "tidings-system",
    ) -> list[Object]:
        text = self.template_text(values, release=release, namespace=namespace).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def server_version(kube: KubeEnv) -> str:
    """The API server's version (``v1.34.4``)."""
    done = kube.kubectl("version", "--output=json")
    version: str = json.loads(done.stdout)["serverVersion"]["gitVersion"]
    return version


def find(objects: Iterable[Object], kind: str, namespace: str | None = None) -> list[Object]:
    """The objects of one kind (in one namespace, if given)."""
    return [
        o
        for o in objects
        if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objects: Iterable[Object], kind: str, namespace: str | None = None) -> Object:
    (found,) = find(objects, kind, namespace)
    return found


def env_of(deployment: Object) -> dict[str, str]:
    """The literal environment variables of a Deployment's first container."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def rules_grant(rules: Iterable[Mapping[str, Any]], group: str, resource: str, verb: str) -> bool:
    """Whether RBAC ``rules`` allow ``verb`` on ``resource`` (``name/subresource``) of
    ``group``, read the way the API server's authorizer reads them."""
    return any(
        (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
        and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
        and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
        and not rule.get("resourceNames")
        for rule in rules
    )
