"""The Helm chart renders: ``helm lint`` (strict too), ``helm template`` for one namespace,
several and all of them, and ``values.schema.json`` refusing bad values with a message
that names the value. The real ``helm`` built by ``scripts/kube`` runs; what the
rendered objects do on a real API server is ``test_helm_install.py``'s part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helm_support import APP_VERSION, CHART, CHART_CRDS, Helm, env_of, find, one, rules_grant
from servers import KubeEnv

pytestmark = pytest.mark.slow

RELEASE_NS = "tidings-system"
MULTI = {
    "watchNamespaces": ["team-a", "team-b", "team-a"],
    "peering": {"name": "tidings-ops", "standalone": False, "priority": 100},
    "logLevel": "debug",
    "regions": ["us-east", "eu-west"],
    "heartbeatInterval": 2,
    "reconcileInterval": 10,
    "topicCheckInterval": 2.5,
    "keyspaceCheckInterval": 20,
    "shardInterval": 15,
    "watchTimeout": 60,
}
ALL = {"watchAllNamespaces": True}
STANDALONE = {"peering": {"name": "tidings-operator", "standalone": True}}


@pytest.fixture(scope="module")
def helm(kube_env: KubeEnv, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(kube_env, tmp_path_factory.mktemp("helm"))


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize(
    "values", [None, MULTI, ALL, STANDALONE], ids=["default", "multi", "all", "standalone"]
)
def test_lint_passes(helm: Helm, strict: bool, values: dict[str, Any] | None) -> None:
    args = ["lint", str(CHART), "--namespace", RELEASE_NS]
    if strict:
        args.append("--strict")
    if values is not None:
        args += ["--values", helm.values_file(values)]
    done = helm.run(*args, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout
    if strict:
        assert "[WARNING]" not in done.stdout, done.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["appVersion"]) == ("v2", "tidings", "0.2.0")
    assert (CHART / "values.schema.json").is_file()
    assert sorted(p.name for p in CHART_CRDS.glob("*.yaml")) == [
        "chatregions.tidings.dev.yaml",
        "clusterkopfpeerings.kopf.dev.yaml",
        "kopfpeerings.kopf.dev.yaml",
        "messageshards.tidings.dev.yaml",
        "pushpools.tidings.dev.yaml",
    ]


# --------------------------------------------------------------------------- template


def test_default_values_watch_the_release_namespace(helm: Helm) -> None:
    objects = helm.template(namespace=RELEASE_NS)
    assert sorted({o["kind"] for o in objects}) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "KopfPeering",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == RELEASE_NS, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    deployment = one(objects, "Deployment")
    assert env_of(deployment)["TIDINGS_OPERATOR_NAMESPACES"] == RELEASE_NS
    assert env_of(deployment)["TIDINGS_OPERATOR_PEERING"] == "tidings-operator"
    peering = one(objects, "KopfPeering")
    assert (peering["apiVersion"], peering["metadata"]["name"]) == (
        "kopf.dev/v1",
        "tidings-operator",
    )
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": one(objects, "Role")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": one(objects, "ServiceAccount")["metadata"]["name"],
            "namespace": RELEASE_NS,
        }
    ]


def test_the_operator_deployment(helm: Helm) -> None:
    deployment = one(helm.template(namespace=RELEASE_NS), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/tidings/tidings:{APP_VERSION}"
    assert container["command"] == ["tidings-operator", "run"]
    assert "args" not in container
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env_of(deployment) == {
        "TIDINGS_OPERATOR_NAMESPACES": RELEASE_NS,
        "TIDINGS_OPERATOR_PEERING": "tidings-operator",
        "TIDINGS_OPERATOR_PRIORITY": "0",
        "TIDINGS_OPERATOR_HEALTH_PORT": "8080",
        "TIDINGS_OPERATOR_METRICS_PORT": "9090",
        "TIDINGS_OPERATOR_HEARTBEAT_INTERVAL": "5",
        "TIDINGS_OPERATOR_RECONCILE_INTERVAL": "30",
        "TIDINGS_OPERATOR_TOPIC_CHECK_INTERVAL": "5",
        "TIDINGS_OPERATOR_KEYSPACE_CHECK_INTERVAL": "10",
        "TIDINGS_OPERATOR_SHARD_INTERVAL": "60",
        "TIDINGS_OPERATOR_MAX_CONCURRENT_RECONCILES": "8",
        "TIDINGS_OPERATOR_WATCH_TIMEOUT": "300",
        "TIDINGS_OPERATOR_LOG_LEVEL": "info",
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}


def test_the_metrics_service_selects_the_operator(helm: Helm) -> None:
    objects = helm.template(namespace=RELEASE_NS)
    service = one(objects, "Service")
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_several_namespaces_get_a_role_and_a_peering_each(helm: Helm) -> None:
    objects = helm.template(MULTI, namespace=RELEASE_NS)
    for kind in ("Role", "RoleBinding", "KopfPeering"):
        assert sorted(o["metadata"]["namespace"] for o in find(objects, kind)) == [
            "team-a",
            "team-b",
        ], kind
    assert {o["metadata"]["name"] for o in find(objects, "KopfPeering")} == {"tidings-ops"}
    env = env_of(one(objects, "Deployment"))
    assert env["TIDINGS_OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert env["TIDINGS_OPERATOR_PEERING"] == "tidings-ops"
    assert env["TIDINGS_OPERATOR_PRIORITY"] == "100"
    assert env["TIDINGS_OPERATOR_REGIONS"] == "us-east,eu-west"
    assert env["TIDINGS_OPERATOR_HEARTBEAT_INTERVAL"] == "2"
    assert env["TIDINGS_OPERATOR_LOG_LEVEL"] == "debug"
    assert env["TIDINGS_OPERATOR_RECONCILE_INTERVAL"] == "10"
    assert env["TIDINGS_OPERATOR_TOPIC_CHECK_INTERVAL"] == "2.5"
    assert env["TIDINGS_OPERATOR_KEYSPACE_CHECK_INTERVAL"] == "20"
    assert env["TIDINGS_OPERATOR_SHARD_INTERVAL"] == "15"
    assert env["TIDINGS_OPERATOR_WATCH_TIMEOUT"] == "60"
    # Cluster-wide, only the CRDs kopf scans.
    assert one(objects, "ClusterRole")["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        }
    ]


def test_all_namespaces_turns_the_rules_cluster_wide(helm: Helm) -> None:
    objects = helm.template(ALL, namespace=RELEASE_NS)
    assert not find(objects, "Role")
    assert not find(objects, "RoleBinding")
    assert not find(objects, "KopfPeering")
    peering = one(objects, "ClusterKopfPeering")
    assert "namespace" not in peering["metadata"]
    rules = one(objects, "ClusterRole")["rules"]
    assert rules_grant(rules, "", "namespaces", "watch")
    assert rules_grant(rules, "kopf.dev", "clusterkopfpeerings", "patch")
    assert not rules_grant(rules, "kopf.dev", "kopfpeerings", "patch")
    assert rules_grant(rules, "tidings.dev", "chatregions/status", "patch")
    env = env_of(one(objects, "Deployment"))
    assert env["TIDINGS_OPERATOR_ALL_NAMESPACES"] == "true"
    assert "TIDINGS_OPERATOR_NAMESPACES" not in env


def test_standalone_has_no_peering(helm: Helm) -> None:
    objects = helm.template(STANDALONE, namespace=RELEASE_NS)
    assert not find(objects, "KopfPeering")
    assert not find(objects, "ClusterKopfPeering")
    assert not rules_grant(one(objects, "Role")["rules"], "kopf.dev", "kopfpeerings", "get")
    env = env_of(one(objects, "Deployment"))
    assert env["TIDINGS_OPERATOR_STANDALONE"] == "true"
    assert "TIDINGS_OPERATOR_PEERING" not in env


def test_namespaced_rules_are_the_operators_needs_and_no_more(helm: Helm) -> None:
    rules = one(helm.template(namespace=RELEASE_NS), "Role")["rules"]
    for group, resource, verb in [
        ("tidings.dev", "chatregions", "watch"),
        ("tidings.dev", "messageshards", "create"),
        ("tidings.dev", "pushpools/status", "patch"),
        ("tidings.dev", "chatregions/finalizers", "update"),
        ("apps", "deployments", "patch"),
        ("", "configmaps", "watch"),
        ("rbac.authorization.k8s.io", "roles", "create"),
        ("", "secrets", "get"),
        ("", "pods", "list"),
        ("events.k8s.io", "events", "create"),
        ("kopf.dev", "kopfpeerings", "patch"),
    ]:
        assert rules_grant(rules, group, resource, verb), (group, resource, verb)
    for group, resource, verb in [
        ("", "secrets", "create"),
        ("", "secrets", "patch"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("tidings.dev", "chatregions", "delete"),
        ("apps", "deployments", "update"),
        ("rbac.authorization.k8s.io", "roles", "escalate"),
        ("rbac.authorization.k8s.io", "rolebindings", "bind"),
    ]:
        assert not rules_grant(rules, group, resource, verb), (group, resource, verb)
    assert not [r for r in rules if "*" in r["verbs"] or "*" in r["resources"]]


def test_image_and_names_follow_the_values(helm: Helm) -> None:
    values = {
        "image": {"repository": "registry.local/tidings", "tag": "dev", "pullPolicy": "Always"},
        "fullnameOverride": "ops",
    }
    objects = helm.template(values, release="r1", namespace="ns1")
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/tidings:dev"
    assert container["imagePullPolicy"] == "Always"
    assert one(objects, "Deployment")["metadata"]["name"] == "ops"
    assert one(objects, "ClusterRole")["metadata"]["name"] == "ns1-ops"


def test_notes_say_how_to_apply_the_examples_and_see_status(helm: Helm) -> None:
    # helm template leaves NOTES.txt out; an install's dry run prints it. The server's
    # dry run needs the CRDs and the namespace (helm skips both when dry-running).
    helm.kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))
    ns = helm.kube.kubectl("create", "namespace", RELEASE_NS, "--dry-run=client", "-o", "yaml")
    helm.kube.kubectl("apply", "-f", "-", input=ns.stdout)
    done = helm.run("install", "tidings", str(CHART), "--namespace", RELEASE_NS, "--dry-run=server")
    assert "kubectl -n tidings-system apply -f examples/us-east.yaml" in done.stdout
    assert "get chatregions,messageshards,pushpools" in done.stdout


# --------------------------------------------------------------------------- refused values


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"logLevel": "verbose"}, "logLevel"),
        ({"watchNamespaces": "default"}, "watchNamespaces"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"reconcileInterval": 0}, "reconcileInterval"),
        ({"shardInterval": 0}, "shardInterval"),
        ({"topicCheckInterval": "5s"}, "topicCheckInterval"),
        ({"watchTimeout": "5m"}, "watchTimeout"),
        ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"replicas": 3}, "replicas"),
        ({"peering": {"name": "Bad Name", "standalone": False}}, "peering"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_bad_values_are_refused_by_the_schema(
    helm: Helm, values: dict[str, Any], field: str
) -> None:
    done = helm.template_text(values, check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert field in done.stderr, done.stderr


def test_watching_all_namespaces_and_a_list_at_once_is_refused(helm: Helm) -> None:
    done = helm.template_text({"watchAllNamespaces": True, "watchNamespaces": ["a"]}, check=False)
    assert done.returncode != 0
    assert "watchAllNamespaces: true and a watchNamespaces list exclude each other" in done.stderr


def test_a_bad_values_file_is_refused_by_lint_too(helm: Helm, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("logLevel: loud\nwatchAllNamespaces: maybe\n")
    done = helm.run("lint", str(CHART), "--values", str(bad), check=False)
    assert done.returncode != 0
    assert "logLevel" in done.stdout + done.stderr
    assert "watchAllNamespaces" in done.stdout + done.stderr
