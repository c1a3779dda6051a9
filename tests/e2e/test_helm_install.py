"""The chart on a real API server (``scripts/kube``): every rendered object passes a
server-side dry run, the installed operator pod is admitted under the Pod Security
"restricted" profile, and the operator's ServiceAccount can do each thing the operator
does (proved by doing it, as that account, with the operator's own manifests) and
nothing more.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from helm_support import CHART, CHART_CRDS, Helm, one
from operator_support import eventually, get_json
from servers import ROOT, KubeEnv
from tidings_operator.models import ChatRegion, parse
from tidings_operator.resources import region_children

pytestmark = pytest.mark.slow

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


@dataclass(frozen=True)
class Namespaces:
    """The release's namespace, two it watches, and one it must not touch."""

    release: str
    watched: tuple[str, str]
    other: str

    @property
    def all(self) -> tuple[str, ...]:
        return (self.release, *self.watched, self.other)


@dataclass(frozen=True)
class Release:
    helm: Helm
    name: str
    ns: Namespaces
    service_account: str

    @property
    def kube(self) -> KubeEnv:
        return self.helm.kube

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.ns.release}:{self.service_account}"

    def as_operator(self, *args: str, input: str | None = None) -> tuple[bool, str]:
        """``kubectl ARGS`` as the operator's ServiceAccount: (succeeded, output)."""
        done = self.kube.kubectl(f"--as={self.user}", *args, input=input, check=False)
        return done.returncode == 0, done.stdout + done.stderr

    def can(self, verb: str, resource: str, namespace: str | None, sub: str = "") -> bool:
        args = ["auth", "can-i", verb, resource]
        if sub:
            args.append(f"--subresource={sub}")
        if namespace:
            args += ["--namespace", namespace]
        admin = self.kube.kubectl(*args, check=False)
        assert admin.stdout.strip() == "yes", f"not a real permission: {args} {admin.stderr}"
        done = self.kube.kubectl(*args, f"--as={self.user}", check=False)
        assert done.stdout.strip() in ("yes", "no"), done.stderr
        return done.stdout.strip() == "yes"


def make_namespaces(kube: KubeEnv) -> Namespaces:
    base = f"h{uuid.uuid4().hex[:10]}"
    ns = Namespaces(f"{base}-op", (f"{base}-a", f"{base}-b"), f"{base}-x")
    for name in ns.all:
        kube.kubectl("create", "namespace", name)
    labels = [f"{k}={v}" for k, v in RESTRICTED.items()]
    kube.kubectl("label", "namespace", ns.release, *labels)
    return ns


def drop_namespaces(kube: KubeEnv, ns: Namespaces) -> None:
    kube.kubectl("delete", "namespace", *ns.all, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def helm(kube_env: KubeEnv, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm, with the chart's CRDs on the cluster (as ``helm install`` puts them)."""
    kube_env.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))
    for path in sorted(CHART_CRDS.glob("*.yaml")):
        kube_env.kubectl("wait", "--for=condition=Established", "-f", str(path), "--timeout=60s")
    return Helm(kube_env, tmp_path_factory.mktemp("helm"))


def install(helm: Helm, values: dict[str, Any]) -> Iterator[Release]:
    ns = make_namespaces(helm.kube)
    name = "tidings"
    values = {"watchNamespaces": list(ns.watched), **values}
    try:
        helm.run(
            "install", name, str(CHART), "--namespace", ns.release,
            "--values", helm.values_file(values),
        )  # fmt: skip
        yield Release(helm, name, ns, service_account=name)
    finally:
        helm.run("uninstall", name, "--namespace", ns.release, "--wait=false", check=False)
        drop_namespaces(helm.kube, ns)


@pytest.fixture(scope="module")
def release(helm: Helm) -> Iterator[Release]:
    """The chart installed to watch two namespaces."""
    yield from install(helm, {})


@pytest.fixture(scope="module")
def cluster_release(helm: Helm) -> Iterator[Release]:
    """The chart installed to watch every namespace (its own peering name: the
    ClusterKopfPeering is cluster-wide)."""
    peering = f"p{uuid.uuid4().hex[:10]}"
    yield from install(
        helm,
        {
            "watchNamespaces": [],
            "watchAllNamespaces": True,
            "peering": {"name": peering, "standalone": False},
        },
    )


# --------------------------------------------------------------------------- dry run


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watch": "two"},
        {"watchAllNamespaces": True},
        {"peering": {"name": "solo", "standalone": True}},
    ],
    ids=["default", "two-namespaces", "all-namespaces", "standalone"],
)
def test_rendered_objects_pass_a_server_side_dry_run(helm: Helm, values: dict[str, Any]) -> None:
    ns = make_namespaces(helm.kube)
    try:
        if values.pop("watch", None):
            values["watchNamespaces"] = list(ns.watched)
        text = helm.template_text(values, namespace=ns.release).stdout
        objects = [doc for doc in yaml.safe_load_all(text) if doc]
        done = helm.kube.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("(server dry run)") == len(objects), done.stdout
        # The namespace enforces (and warns about) the restricted profile.
        assert "would violate PodSecurity" not in done.stderr, done.stderr
    finally:
        drop_namespaces(helm.kube, ns)


# --------------------------------------------------------------------------- installed


def test_the_installed_operator_pod_is_admitted_as_restricted(release: Release) -> None:
    """kwok's fake nodes run pods: the Deployment becomes Available only if its pod
    passed the release namespace's ``enforce: restricted``."""
    ns = release.ns.release

    def available() -> bool:
        status = (get_json(release.kube, "deployment", release.name, "-n", ns) or {}).get(
            "status", {}
        )
        return status.get("availableReplicas") == 1

    eventually(available, "the operator Deployment available")
    (pod,) = get_json(release.kube, "pods", "-n", ns, "-l", "app.kubernetes.io/component=operator")[
        "items"
    ]
    assert pod["spec"]["serviceAccountName"] == release.service_account
    for watched in release.ns.watched:
        peering = get_json(release.kube, "kopfpeering", "tidings-operator", "-n", watched)
        assert peering is not None, watched


def region_in(kube: KubeEnv, namespace: str) -> ChatRegion:
    """The example region created (by an admin) in ``namespace``, as the API stored it."""
    doc = yaml.safe_load((ROOT / "examples" / "us-east.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    kube.kubectl("apply", "-f", "-", input=json.dumps(doc))
    stored = get_json(kube, "chatregion", doc["metadata"]["name"], "-n", namespace)
    assert stored is not None
    region = parse(stored)
    assert isinstance(region, ChatRegion)
    return region


def as_list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def test_the_operator_can_create_a_regions_children(release: Release) -> None:
    """Server-side apply of every child the operator makes of a ChatRegion, as the
    operator's ServiceAccount: Deployments, Services, ConfigMaps, HPAs, PDBs, the
    platform's ServiceAccount, Role (an escalation check: the operator must hold what
    the Role grants) and RoleBinding, and the MessageShards."""
    namespace = release.ns.watched[1]
    children = region_children(region_in(release.kube, namespace))
    ok, out = release.as_operator(
        "apply", "--server-side", "--field-manager=tidings-operator", "-f", "-",
        input=as_list(children),
    )  # fmt: skip
    assert ok, out
    kinds = {c["kind"] for c in children}
    assert {"Deployment", "Role", "RoleBinding", "MessageShard"} <= kinds
    for child in children:
        assert get_json(release.kube, child["kind"], child["metadata"]["name"], "-n", namespace)
    # Applying again is a no-op the operator may also do (drift repair).
    ok, out = release.as_operator(
        "apply", "--server-side", "--field-manager=tidings-operator", "-f", "-",
        input=as_list(children),
    )  # fmt: skip
    assert ok, out
    # Pruning.
    deployment = next(c for c in children if c["kind"] == "Deployment")
    ok, out = release.as_operator(
        "delete", "deployment", deployment["metadata"]["name"], "-n", namespace
    )
    assert ok, out


def test_the_operator_cannot_create_children_where_it_does_not_watch(release: Release) -> None:
    for namespace in (release.ns.other, release.ns.release):
        children = region_children(region_in(release.kube, namespace))
        for child in children:
            ok, out = release.as_operator(
                "apply", "--server-side", "--field-manager=tidings-operator", "-f", "-",
                input=json.dumps(child),
            )  # fmt: skip
            assert not ok, f"{child['kind']} in {namespace}"
            assert "forbidden" in out.lower(), out


def test_the_operator_can_report_status_events_and_heartbeats(release: Release) -> None:
    namespace = release.ns.watched[0]
    region = region_in(release.kube, namespace)
    name = region.metadata.name
    status = {"status": {"phase": "Pending", "observedGeneration": 1}}
    ok, out = release.as_operator(
        "patch", "chatregion", name, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    assert ok, out
    finalizer = {"metadata": {"finalizers": ["tidings.dev/finalizer"]}}
    ok, out = release.as_operator(
        "patch", "chatregion", name, "-n", namespace, "--type=merge", "-p", json.dumps(finalizer)
    )
    # Nothing runs here to remove the finalizer: an admin does, or the namespace's
    # deletion would never finish.
    release.kube.kubectl(
        "patch", "chatregion", name, "-n", namespace, "--type=merge",
        "-p", '{"metadata":{"finalizers":null}}',
    )  # fmt: skip
    assert ok, out
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}-", "namespace": namespace},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "tidings.dev/operator",
        "reportingInstance": "tidings-operator-0",
        "action": "Reconcile",
        "reason": "Created",
        "type": "Normal",
        "note": "created by the RBAC test",
        "regarding": {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "ChatRegion",
            "name": name,
            "namespace": namespace,
        },
    }
    ok, out = release.as_operator("create", "-f", "-", input=json.dumps(event))
    assert ok, out
    heartbeat = {"status": {"tidings-test": {"priority": 0, "lifetime": 60}}}
    ok, out = release.as_operator(
        "patch", "kopfpeering", "tidings-operator", "-n", namespace, "--type=merge",
        "-p", json.dumps(heartbeat),
    )  # fmt: skip
    assert ok, out
    release.kube.kubectl(
        "create", "secret", "generic", "cassandra", "-n", namespace, "--from-literal=password=x"
    )
    ok, out = release.as_operator("get", "secret", "cassandra", "-n", namespace)
    assert ok, out
    ok, out = release.as_operator("get", "crd", "chatregions.tidings.dev")
    assert ok, out


WATCHED, OTHER, RELEASE_NS, CLUSTER = "watched", "other", "release", "cluster"

CAN = [
    ("watch", "chatregions.tidings.dev", WATCHED, ""),
    ("patch", "chatregions.tidings.dev", WATCHED, "status"),
    ("update", "messageshards.tidings.dev", WATCHED, "status"),
    ("update", "pushpools.tidings.dev", WATCHED, "finalizers"),
    ("create", "messageshards.tidings.dev", WATCHED, ""),
    ("delete", "messageshards.tidings.dev", WATCHED, ""),
    ("create", "deployments.apps", WATCHED, ""),
    ("patch", "deployments.apps", WATCHED, ""),
    ("delete", "services", WATCHED, ""),
    ("patch", "configmaps", WATCHED, ""),
    ("create", "serviceaccounts", WATCHED, ""),
    ("create", "poddisruptionbudgets.policy", WATCHED, ""),
    ("patch", "horizontalpodautoscalers.autoscaling", WATCHED, ""),
    ("create", "roles.rbac.authorization.k8s.io", WATCHED, ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", WATCHED, ""),
    ("get", "secrets", WATCHED, ""),
    ("watch", "secrets", WATCHED, ""),
    ("list", "pods", WATCHED, ""),
    ("create", "events", WATCHED, ""),
    ("create", "events.events.k8s.io", WATCHED, ""),
    ("patch", "kopfpeerings.kopf.dev", WATCHED, ""),
    ("get", "leases.coordination.k8s.io", WATCHED, ""),
    ("patch", "leases.coordination.k8s.io", WATCHED, ""),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", CLUSTER, ""),
]
CANNOT = [
    ("create", "secrets", WATCHED, ""),
    ("patch", "secrets", WATCHED, ""),
    ("delete", "secrets", WATCHED, ""),
    ("get", "secrets", OTHER, ""),
    ("get", "secrets", RELEASE_NS, ""),
    ("create", "pods", WATCHED, ""),
    ("delete", "pods", WATCHED, ""),
    ("create", "pods", WATCHED, "exec"),
    ("update", "deployments.apps", WATCHED, ""),
    ("create", "deployments.apps", OTHER, ""),
    ("create", "deployments.apps", RELEASE_NS, ""),
    ("patch", "chatregions.tidings.dev", OTHER, "status"),
    ("delete", "chatregions.tidings.dev", WATCHED, ""),
    ("escalate", "roles.rbac.authorization.k8s.io", WATCHED, ""),
    ("bind", "roles.rbac.authorization.k8s.io", WATCHED, ""),
    ("patch", "kopfpeerings.kopf.dev", OTHER, ""),
    ("delete", "leases.coordination.k8s.io", WATCHED, ""),
    ("patch", "leases.coordination.k8s.io", OTHER, ""),
    ("delete", "nodes", CLUSTER, ""),
    ("list", "nodes", CLUSTER, ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", CLUSTER, ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", CLUSTER, ""),
    ("list", "namespaces", CLUSTER, ""),
    ("patch", "clusterkopfpeerings.kopf.dev", CLUSTER, ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", CLUSTER, ""),
    ("impersonate", "serviceaccounts", WATCHED, ""),
]


def where(release: Release, scope: str) -> str | None:
    return {
        WATCHED: release.ns.watched[0],
        OTHER: release.ns.other,
        RELEASE_NS: release.ns.release,
        CLUSTER: None,
    }[scope]


def ids(case: tuple[str, str, str, str]) -> str:
    verb, resource, scope, sub = case
    return f"{verb}-{resource.split('.')[0]}{'/' + sub if sub else ''}-{scope}"


@pytest.mark.parametrize("case", CAN, ids=ids)
def test_the_operator_can(release: Release, case: tuple[str, str, str, str]) -> None:
    verb, resource, scope, sub = case
    assert release.can(verb, resource, where(release, scope), sub)


@pytest.mark.parametrize("case", CANNOT, ids=ids)
def test_the_operator_cannot(release: Release, case: tuple[str, str, str, str]) -> None:
    verb, resource, scope, sub = case
    assert not release.can(verb, resource, where(release, scope), sub)


# --------------------------------------------------------------------------- all namespaces

CLUSTER_CAN = [
    ("patch", "chatregions.tidings.dev", OTHER, "status"),
    ("create", "deployments.apps", OTHER, ""),
    ("create", "roles.rbac.authorization.k8s.io", OTHER, ""),
    ("get", "secrets", OTHER, ""),
    ("create", "events.events.k8s.io", OTHER, ""),
    ("list", "namespaces", CLUSTER, ""),
    ("watch", "namespaces", CLUSTER, ""),
    ("patch", "clusterkopfpeerings.kopf.dev", CLUSTER, ""),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", CLUSTER, ""),
]
CLUSTER_CANNOT = [
    ("create", "secrets", OTHER, ""),
    ("create", "pods", OTHER, ""),
    ("update", "deployments.apps", OTHER, ""),
    ("delete", "nodes", CLUSTER, ""),
    ("create", "namespaces", CLUSTER, ""),
    ("delete", "namespaces", CLUSTER, ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", CLUSTER, ""),
    ("create", "clusterkopfpeerings.kopf.dev", CLUSTER, ""),
    ("patch", "kopfpeerings.kopf.dev", OTHER, ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", CLUSTER, ""),
]


@pytest.mark.parametrize("case", CLUSTER_CAN, ids=ids)
def test_watching_all_namespaces_can(
    cluster_release: Release, case: tuple[str, str, str, str]
) -> None:
    verb, resource, scope, sub = case
    assert cluster_release.can(verb, resource, where(cluster_release, scope), sub)


@pytest.mark.parametrize("case", CLUSTER_CANNOT, ids=ids)
def test_watching_all_namespaces_cannot(
    cluster_release: Release, case: tuple[str, str, str, str]
) -> None:
    verb, resource, scope, sub = case
    assert not cluster_release.can(verb, resource, where(cluster_release, scope), sub)


def test_watching_all_namespaces_has_no_roles_but_a_cluster_peering(
    cluster_release: Release,
) -> None:
    kube = cluster_release.kube
    for namespace in cluster_release.ns.watched:
        roles = get_json(kube, "roles", "-n", namespace)
        assert roles is not None
        assert not roles["items"], namespace
    peering = one(
        [
            o
            for o in yaml.safe_load_all(
                cluster_release.helm.run(
                    "get",
                    "manifest",
                    cluster_release.name,
                    "--namespace",
                    cluster_release.ns.release,
                ).stdout
            )
            if o
        ],
        "ClusterKopfPeering",
    )
    assert get_json(kube, "clusterkopfpeering", peering["metadata"]["name"]) is not None
