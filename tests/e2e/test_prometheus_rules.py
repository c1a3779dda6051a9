"""The chart's Prometheus rules as code: ``promtool check rules`` on every rule file,
``promtool test rules`` on every unit test of ``tests/rules`` (each alert firing and
not firing), a runbook per alert, and rules that read only metrics the platform and the
operator really export. promtool is the real one ``scripts/prometheus`` builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from prometheus_support import (
    RULE_TESTS,
    RULES,
    RUNBOOK_BASE,
    RUNBOOKS,
    metric_names,
    promtool,
)
from tidings.metrics import Metrics
from tidings_operator import metrics as operator_metrics

RULE_FILES = sorted(RULES.glob("*.yaml"))
TEST_FILES = sorted(RULE_TESTS.glob("*_test.yaml"))


def rules_of(kind: str) -> list[dict[str, Any]]:
    """Every rule with a ``kind`` key (``alert`` or ``record``) of every rule file."""
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if kind in rule
    ]


def exported_series() -> set[str]:
    """Every series name the platform's and the operator's registries can expose."""
    families = list(Metrics.create().registry.collect())
    for value in vars(operator_metrics).values():
        if hasattr(value, "collect") and hasattr(value, "_name"):
            families += value.collect()
    names = set()
    for family in families:
        names.add(family.name)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ())
        names.update(family.name + s for s in suffixes)
    return names


def test_there_are_rule_files_and_tests() -> None:
    assert [p.name for p in RULE_FILES] == ["alerts.yaml", "slo.yaml"]
    assert [p.name for p in TEST_FILES] == ["alerts_test.yaml", "slo_test.yaml"]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_checks_the_rule_file(path: Path) -> None:
    done = promtool("check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    done = promtool("test", "rules", path.name, cwd=path.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules_of("alert")}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"


def test_every_recording_rule_is_tested() -> None:
    tested = {
        check["expr"]
        for path in TEST_FILES
        for case in yaml.safe_load(path.read_text())["tests"]
        for check in case.get("promql_expr_test", [])
    }
    recorded = {rule["record"] for rule in rules_of("record")}
    burn = {r for r in recorded if "slo_errors" in r and not r.endswith("ratio_rate5m")}
    # The longer burn-rate windows are the same expression: the burn alerts' tests cover them.
    assert recorded - burn - tested == set()


def test_every_alert_has_a_severity_annotations_and_a_runbook() -> None:
    for rule in rules_of("alert"):
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}/{name}.md"
        runbook = (RUNBOOKS / f"{name}.md").read_text()
        assert runbook.startswith(f"# {name}\n"), name
        for part in ("**Means**", "**Confirm**", "**Do**"):
            assert part in runbook, (name, part)
    listed = (RUNBOOKS / "README.md").read_text()
    assert all(f"[{rule['alert']}]" in listed for rule in rules_of("alert"))
    assert {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"} == {
        rule["alert"] for rule in rules_of("alert")
    }


def test_rules_read_only_metrics_that_exist() -> None:
    exported = exported_series()
    for rule in rules_of("alert") + rules_of("record"):
        unknown = metric_names(rule["expr"]) - exported
        assert not unknown, (rule.get("alert") or rule.get("record"), unknown)
