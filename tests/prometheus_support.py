"""The real Prometheus and promtool of ``scripts/prometheus`` (built by ``make deps``):
rule checks, and a server on loopback scraping what a test points it at."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from servers import ROOT, _up

PROMETHEUS = ROOT / "scripts" / "prometheus"
RULES = ROOT / "charts" / "tidings" / "files" / "rules"
RULE_TESTS = ROOT / "tests" / "rules"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/tidings/tidings/blob/main/docs/runbooks"

BUILD_TIMEOUT = 1800.0
"""``scripts/prometheus build`` on a cold machine (``make deps`` builds it beforehand)."""


def prometheus_env(verb: str = "build") -> dict[str, str]:
    """``scripts/prometheus VERB`` (``build``: the binaries only; ``up``: the server too,
    idempotent), then its exports. Fails the test, never skips."""
    return _up(PROMETHEUS, [], timeout=BUILD_TIMEOUT, verb=verb)


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    tool = prometheus_env()["TIDINGS_PROMTOOL"]
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def metric_names(expr: str) -> set[str]:
    """The ``tidings_*`` series an expression reads (recording rules' ``a:b:c`` names
    and label values aside)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"(?<![\w:])(tidings_\w+)", without_strings))


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus: its HTTP API, and the file_sd folder it watches."""

    url: str
    targets_dir: Path

    def scrape(self, name: str, targets: Sequence[str], labels: Mapping[str, str]) -> None:
        """Point Prometheus at ``targets`` (file_sd, picked up within a second)."""
        path = self.targets_dir / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": list(targets), "labels": dict(labels)}]))
        tmp.rename(path)

    def forget(self, name: str) -> None:
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=10)
        r.raise_for_status()
        active: list[dict[str, Any]] = r.json()["data"]["activeTargets"]
        return active

    def until(
        self, what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.5
    ) -> Any:
        """``check()``'s first truthy answer; fails with ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            answer = check()
            if answer:
                return answer
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus: {what} not within {timeout:.0f}s", pytrace=False)
            time.sleep(interval)


def scrape_address(url: str, ops_url: str = "") -> tuple[str, str]:
    """``(host:port, path)`` Prometheus scrapes for a platform process serving ``url``:
    its operations port (``ops_url``: ``/metrics``, never behind a Service) when known,
    else the main one. The file_sd group's ``__metrics_path__`` label carries the path."""
    base = ops_url or url
    address = base.removeprefix("http://").removeprefix("https://").rstrip("/")
    return address, "/metrics"


_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exposed_series(text: str) -> set[str]:
    """The series names a ``/metrics`` text declares: every family's ``# TYPE`` line, with
    the suffixes of its type (a labelled family that has seen no sample yet is declared all
    the same, so an idle process still shows every name it can export)."""
    names: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, family, kind = line.split(maxsplit=3)
        if kind == "counter":
            family = family.removesuffix("_total")
        names.update(family + suffix for suffix in _SERIES_SUFFIXES.get(kind, ("",)))
    return names


def recorded_names() -> set[str]:
    """The series the chart's recording rules write."""
    return {
        rule["record"]
        for path in sorted(RULES.glob("*.yaml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def selected_series(url: str, expr: str) -> set[str]:
    """The metric names ``expr`` selects, as the real Prometheus at ``url`` parses it
    (``/api/v1/parse_query``); fails the test with Prometheus's own message when it does
    not parse."""
    r = httpx.post(f"{url}/api/v1/parse_query", data={"query": expr}, timeout=10)
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        pytest.fail(f"Prometheus does not parse {expr!r}: {body.get('error')}", pytrace=False)
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("vectorSelector", "matrixSelector") and node.get("name"):
                names.add(str(node["name"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body["data"])
    return names
