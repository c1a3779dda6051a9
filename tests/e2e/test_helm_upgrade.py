"""``helm upgrade`` from the previous chart version to this one, with a live region, done
the way docs/upgrading.md says: the new CRDs applied server-side first, then the chart.

The previous version is what git holds: the parent of the commit that gave
``Chart.yaml`` its current version (or ``HEAD`` while that change is uncommitted), its
chart installed by helm and its operator code run from the same tree. kwok's fake nodes
do not run the chart's operator pod, so the operator is run here as a process, stopped
and restarted on the new code as the Deployment's rollout would. The region's pods must
stay the same pods (no restart), its Deployments keep their generation (no spec change),
and no MessageShard moves.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from helm_support import APP_VERSION, CHART, CHART_CRDS, Helm
from operator_support import (
    OperatorProcess,
    apply,
    eventually,
    get_json,
    ready_now,
    region_manifest,
    running_operator,
)
from servers import ROOT, KubeEnv
from tidings_operator.names import API_VERSION, OLD_VERSION, VERSION

pytestmark = pytest.mark.slow

CHART_FILE = "charts/tidings/Chart.yaml"
OUR_CRDS = ("chatregions", "messageshards", "pushpools")


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def chart_version_at(commit: str) -> str:
    version: str = yaml.safe_load(git("show", f"{commit}:{CHART_FILE}"))["version"]
    return version


def full_history() -> None:
    """A shallow clone (CI's may be) lacks the previous version: fetch the rest once."""
    if git("rev-parse", "--is-shallow-repository").strip() != "true":
        return
    done = subprocess.run(
        ["git", "fetch", "--unshallow", "--quiet"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, (
        "the upgrade test installs the previous chart version from git history, and this "
        f"clone is shallow and could not be deepened (git fetch --unshallow: {done.stderr}); "
        "clone with the full history"
    )


def previous_chart_commit() -> str:
    """The last commit whose chart had the version before the current one."""
    full_history()
    current = yaml.safe_load((ROOT / CHART_FILE).read_text())["version"]
    introduced = None
    for commit in git("log", "--format=%H", "--", CHART_FILE).split():
        if chart_version_at(commit) != current:
            break
        introduced = commit
    previous = "HEAD" if introduced is None else f"{introduced}^"
    return git("rev-parse", previous).strip()


def extract(commit: str, into: Path) -> Path:
    """The chart and the operator's code of ``commit``, unpacked under ``into``."""
    into.mkdir(parents=True)
    archive = into.with_suffix(".tar")
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "archive", commit, "charts/tidings", "operator", "platform"],
            cwd=ROOT,
            stdout=out,
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def apply_crds(kube: KubeEnv, directory: Path) -> None:
    """The upgrade step of docs/upgrading.md: server-side, taking the fields over from
    whoever applied them before (helm or an earlier ``kubectl apply``)."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(directory))
    for path in sorted(directory.glob("*.yaml")):
        kube.kubectl("wait", "--for=condition=Established", "-f", str(path), "--timeout=60s")
    # kubectl caches discovery: without a refresh it may ask for a version no longer
    # served (NotFound) after the versions changed. ``api-resources`` refetches it.
    kube.kubectl("api-resources", "--api-group=tidings.dev")


def served_versions(kube: KubeEnv, plural: str) -> list[str]:
    crd = get_json(kube, "crd", f"{plural}.tidings.dev")
    assert crd is not None
    return [v["name"] for v in crd["spec"]["versions"] if v["served"]]


def api_version_of(source: Path) -> str:
    """The ``apiVersion`` an operator's source tree reads and writes."""
    names = (source / "operator" / "tidings_operator" / "names.py").read_text()
    found = re.search(r'^API_VERSION: Final = "([^"]+)"$', names, re.MULTILINE)
    assert found, "names.API_VERSION not found in the previous source"
    return found[1]


def versions_in(directory: Path, plural: str) -> list[str]:
    """The served versions of a CRD file, as the cluster lists them after an apply."""
    crd = yaml.safe_load((directory / f"{plural}.tidings.dev.yaml").read_text())
    return [v["name"] for v in crd["spec"]["versions"] if v["served"]]


@dataclass(frozen=True)
class Snapshot:
    """What must not change across the upgrade."""

    pods: dict[str, str]
    """Pod name -> uid: a restarted or replaced pod gets a new uid."""
    deployments: dict[str, int]
    """Deployment name -> generation: any spec change (a rollout) bumps it."""
    shards: dict[str, tuple[str, int, int]]
    """MessageShard name -> (owner, epoch, generation)."""

    @classmethod
    def take(cls, kube: KubeEnv, namespace: str) -> Snapshot:
        def items(kind: str) -> list[dict[str, Any]]:
            listed = get_json(kube, kind, "-n", namespace)
            assert listed is not None
            found: list[dict[str, Any]] = listed["items"]
            return found

        return cls(
            pods={p["metadata"]["name"]: p["metadata"]["uid"] for p in items("pods")},
            deployments={
                d["metadata"]["name"]: d["metadata"]["generation"] for d in items("deployments")
            },
            shards={
                s["metadata"]["name"]: (
                    s["spec"]["owner"],
                    s["spec"]["epoch"],
                    s["metadata"]["generation"],
                )
                for s in items("messageshards")
            },
        )


def owner_versions(kube: KubeEnv, namespace: str) -> set[str]:
    """The ``apiVersion`` of every owner reference on the region's Deployments."""
    listed = get_json(kube, "deployments", "-n", namespace) or {"items": []}
    return {r["apiVersion"] for d in listed["items"] for r in d["metadata"]["ownerReferences"]}


def region_reconciles(op: OperatorProcess) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(op.metrics())
        if family.name == "tidings_operator_reconcile"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("kind") == "ChatRegion"
    )


@pytest.fixture
def namespaces(kube_env: KubeEnv) -> Iterator[tuple[str, str]]:
    """The release's namespace and the one its operator watches."""
    base = f"u{uuid.uuid4().hex[:10]}"
    release, watched = f"{base}-op", f"{base}-a"
    for name in (release, watched):
        kube_env.kubectl("create", "namespace", name)
    yield release, watched
    kube_env.kubectl(
        "delete", "namespace", release, watched, "--wait=false", "--ignore-not-found", check=False
    )


@pytest.mark.timeout(600)
def test_helm_upgrade_from_the_previous_version_keeps_a_live_region_as_it_is(
    kube_env: KubeEnv,
    kafka_bootstrap: str,
    cassandra_env: dict[str, str],
    namespaces: tuple[str, str],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    release_ns, watched = namespaces
    commit = previous_chart_commit()
    previous = extract(commit, tmp_path / "previous")
    old_chart = previous / "charts" / "tidings"
    assert chart_version_at(commit) != yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    helm = Helm(kube_env, tmp_path_factory.mktemp("helm"))
    values = helm.values_file({"watchNamespaces": [watched]})
    release = "tidings"
    name = f"r{watched.removeprefix('u').removesuffix('-a')}"
    manifest = region_manifest(
        name, watched, kafka=kafka_bootstrap, cassandra=cassandra_env, keyspace=f"up_{name}"
    )
    # The region as the previous version's users wrote it.
    old_api = api_version_of(previous)
    manifest["apiVersion"] = old_api

    def region() -> dict[str, Any] | None:
        return get_json(kube_env, "-n", watched, "chatregion", name)

    try:
        # ------------------------------------------------------------ the previous version
        apply_crds(kube_env, old_chart / "crds")
        for plural in OUR_CRDS:
            assert served_versions(kube_env, plural) == versions_in(old_chart / "crds", plural)
        helm.run("install", release, str(old_chart), "-n", release_ns, "--values", values)
        with running_operator(
            kube_env, [watched], tmp_path / "old.log", interval=3.0, source=previous
        ):
            apply(kube_env, manifest)
            eventually(lambda: ready_now(region()), "the region Ready under the old operator")
            before = Snapshot.take(kube_env, watched)
        assert before.pods, before
        assert before.deployments, before
        assert before.shards, before
        # The previous code ran: it knew only the old version.
        assert owner_versions(kube_env, watched) == {old_api}

        # ------------------------------------------------------------ the upgrade
        apply_crds(kube_env, CHART_CRDS)
        for plural in OUR_CRDS:
            served = served_versions(kube_env, plural)
            assert served == versions_in(CHART_CRDS, plural)
            assert VERSION in served  # what the new operator watches
        helm.run("upgrade", release, str(CHART), "-n", release_ns, "--values", values)
        operator = get_json(kube_env, "deployment", release, "-n", release_ns)
        assert operator is not None
        (container,) = operator["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(f":{APP_VERSION}")

        with running_operator(kube_env, [watched], tmp_path / "new.log", interval=3.0) as new:
            # Server-side apply by the new operator rewrites the owner references to the
            # new version: proof that it has applied every child once.
            eventually(
                lambda: owner_versions(kube_env, watched) == {API_VERSION},
                "the new operator to apply the region's children",
            )
            reconciled = region_reconciles(new)
            eventually(lambda: region_reconciles(new) > reconciled, "one more reconcile")
            eventually(lambda: ready_now(region()), "the region Ready under the new operator")
            after = Snapshot.take(kube_env, watched)
            assert after == before, json.dumps([before.__dict__, after.__dict__], indent=1)

            # The old version is still served, with a warning, for clients not yet moved.
            old = kube_env.kubectl(
                "get", f"chatregions.{OLD_VERSION}.tidings.dev", name, "-n", watched
            )
            assert name in old.stdout
            assert "deprecated" in old.stderr, old.stderr
            kube_env.kubectl("delete", "chatregion", name, "-n", watched, "--timeout=120s")
    finally:
        helm.run("uninstall", release, "-n", release_ns, "--wait=false", check=False)
        # Whatever happened, the cluster is left with this version's CRDs.
        apply_crds(kube_env, CHART_CRDS)
