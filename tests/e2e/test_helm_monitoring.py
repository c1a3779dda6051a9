"""The chart's monitoring objects: the PrometheusRule carries exactly the rule files
promtool tests (runbook links rebased), and the PodMonitors scrape the container port
named ``metrics`` of the operator and ``ops`` of every platform component, labelled by
region.
Off by default: a cluster without the Prometheus Operator's CRDs installs the chart.
With the CRDs (from the Prometheus Operator's Go module, ``scripts/prometheus crds``) the
real API server accepts every object as rendered."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from helm_support import CHART, Helm, find, one
from prometheus_support import RULES, RUNBOOK_BASE, prometheus_env, promtool
from servers import KubeEnv

pytestmark = pytest.mark.slow

NS = "tidings-system"
ON = {"monitoring": {"prometheusRule": {"enabled": True}, "podMonitors": {"enabled": True}}}
COMPONENTS = ["gateway", "router", "media", "presence", "delivery", "analytics", "push"]


@pytest.fixture(scope="module")
def helm(kube_env: KubeEnv, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(kube_env, tmp_path_factory.mktemp("helm"))


def test_monitoring_is_off_by_default(helm: Helm) -> None:
    objects = helm.template(namespace=NS)
    assert not {o["kind"] for o in objects} & {"PrometheusRule", "PodMonitor"}
    assert not [c for c in find(objects, "ConfigMap") if "dashboard" in c["metadata"]["name"]]


def test_the_dashboards_are_config_maps_for_grafanas_sidecar(helm: Helm) -> None:
    """One ConfigMap per file of files/dashboards, byte for byte, with the label the
    sidecar of the Grafana chart watches; folder annotation and namespace as configured."""
    values = {
        "monitoring": {
            "dashboards": {
                "enabled": True,
                "annotations": {"grafana_folder": "Tidings"},
                "namespace": "grafana",
            }
        }
    }
    maps = find(helm.template(values, release="tidings", namespace=NS), "ConfigMap")
    files = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert len(files) == 3
    by_name = {m["metadata"]["name"]: m for m in maps}
    for path in files:
        config_map = by_name[f"tidings-dashboard-{path.stem}"]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Tidings"}
        assert config_map["metadata"]["namespace"] == "grafana"
        assert config_map["data"] == {f"tidings-{path.stem}.json": path.read_text().rstrip("\n")}
    default = find(helm.template({"monitoring": {"dashboards": {"enabled": True}}}), "ConfigMap")
    namespaces = {
        m["metadata"]["namespace"] for m in default if "dashboard" in m["metadata"]["name"]
    }
    assert namespaces == {"tidings-system"}  # the release's


def test_the_prometheus_rule_is_the_rule_files(helm: Helm, tmp_path: Path) -> None:
    rule = one(helm.template(ON, namespace=NS), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NS
    files = [yaml.safe_load(p.read_text())["groups"] for p in sorted(RULES.glob("*.yaml"))]
    assert rule["spec"]["groups"] == [g for groups in files for g in groups]
    # What the Prometheus Operator hands Prometheus passes promtool as it is.
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = promtool("check", "rules", str(rendered))
    assert done.returncode == 0, done.stdout + done.stderr


def test_runbook_links_follow_the_configured_base(helm: Helm) -> None:
    values: dict[str, Any] = {
        "monitoring": {
            "prometheusRule": {
                "enabled": True,
                "runbookBaseUrl": "https://runbooks.example/tidings/",
                "labels": {"release": "kube-prometheus-stack"},
            }
        }
    }
    rule = one(helm.template(values, namespace=NS), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url == f"https://runbooks.example/tidings/{alert['alert']}.md"
        assert RUNBOOK_BASE not in url


def test_pod_monitors_scrape_the_metrics_port_of_each_component(helm: Helm) -> None:
    objects = helm.template(
        {**ON, "watchNamespaces": ["team-a", "team-b"]}, release="tidings", namespace=NS
    )
    monitors = {m["metadata"]["name"]: m for m in find(objects, "PodMonitor")}
    assert sorted(monitors) == sorted(["tidings-operator", *(f"tidings-{c}" for c in COMPONENTS)])
    operator = monitors["tidings-operator"]["spec"]
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]
    assert operator["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert operator["namespaceSelector"] == {"matchNames": [NS]}
    (endpoint,) = operator["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["honorLabels"]) == (
        "metrics",
        "/metrics",
        True,
    )
    ports = pod["spec"]["containers"][0]["ports"]
    assert "metrics" in [p["name"] for p in ports]
    for component in COMPONENTS:
        spec = monitors[f"tidings-{component}"]["spec"]
        assert spec["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "tidings",
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "tidings-operator",
        }
        assert spec["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
        (endpoint,) = spec["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("ops", "/metrics")
        assert {
            "sourceLabels": ["__meta_kubernetes_pod_label_tidings_dev_region"],
            "targetLabel": "region",
        } in endpoint["relabelings"]


def test_pod_monitors_select_the_pods_the_operator_builds(helm: Helm) -> None:
    """Every platform Deployment the operator builds (its golden files) is scraped by
    exactly one PodMonitor, through a container port of the name it names, with the
    region label the rules aggregate by."""
    monitors = [
        m["spec"]
        for m in find(helm.template(ON, namespace=NS), "PodMonitor")
        if m["metadata"]["name"] != "tidings-operator"
    ]
    golden = Path(__file__).parents[1] / "unit" / "golden"
    deployments = [
        d
        for path in sorted(golden.glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d and d["kind"] == "Deployment"
    ]
    assert {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in deployments
    } == set(COMPONENTS)
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        (monitor,) = [m for m in monitors if m["selector"]["matchLabels"].items() <= labels.items()]
        ports = [p["name"] for p in pod["spec"]["containers"][0]["ports"]]
        assert monitor["podMetricsEndpoints"][0]["port"] in ports, deployment["metadata"]["name"]
        assert labels["tidings.dev/region"], deployment["metadata"]["name"]


def test_pod_monitors_of_a_cluster_wide_operator_look_in_every_namespace(helm: Helm) -> None:
    values = {**ON, "watchAllNamespaces": True}
    for monitor in find(helm.template(values, namespace=NS), "PodMonitor"):
        if monitor["metadata"]["name"] != "tidings-operator":
            assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_the_schema_refuses_bad_monitoring_values(helm: Helm) -> None:
    bad_values: list[dict[str, Any]] = [
        {"monitoring": {"podMonitors": {"interval": "soon"}}},
        {"monitoring": {"podMonitors": {"components": ["gateway", "mailroom"]}}},
        {"monitoring": {"prometheusRule": {"runbookBaseUrl": "docs/runbooks"}}},
        {"monitoring": {"alertmanager": {}}},
        {"monitoring": {"dashboards": {"labels": {"grafana_dashboard": 1}}}},
    ]
    for bad in bad_values:
        done = helm.template_text(bad, check=False)
        assert done.returncode != 0, bad
        assert "monitoring" in done.stderr, done.stderr


def test_the_chart_ships_the_rule_files() -> None:
    assert sorted(p.name for p in (CHART / "files" / "rules").glob("*.yaml")) == [
        "alerts.yaml",
        "slo.yaml",
    ]


def install_monitoring_crds(kube: KubeEnv) -> None:
    crds = Path(prometheus_env()["TIDINGS_PROMETHEUS_OPERATOR_CRDS"])
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    for path in sorted(crds.glob("*.yaml")):
        kube.kubectl("wait", "--for=condition=Established", "-f", str(path), "--timeout=60s")


def test_the_api_server_accepts_the_monitoring_objects(helm: Helm, kube_env: KubeEnv) -> None:
    install_monitoring_crds(kube_env)
    namespace = f"mon-{uuid.uuid4().hex[:8]}"
    kube_env.kubectl("create", "namespace", namespace)
    try:
        objects = [
            o
            for o in helm.template(ON, namespace=namespace)
            if o["kind"] in ("PrometheusRule", "PodMonitor")
        ]
        assert len(objects) == 1 + 1 + len(COMPONENTS)
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        kube_env.kubectl("apply", "--server-side", "-f", "-", input=manifest)
        got = json.loads(
            kube_env.kubectl(
                "-n", namespace, "get", "prometheusrules,podmonitors", "-o", "json"
            ).stdout
        )["items"]
        assert sorted((o["kind"], o["metadata"]["name"]) for o in got) == sorted(
            (o["kind"], o["metadata"]["name"]) for o in objects
        )
        (rule,) = [o for o in got if o["kind"] == "PrometheusRule"]
        assert rule["spec"]["groups"] == one(objects, "PrometheusRule")["spec"]["groups"]
    finally:
        kube_env.kubectl("delete", "namespace", namespace, "--wait=false")
