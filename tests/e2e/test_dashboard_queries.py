"""Every query of the chart's Grafana dashboards parses in the real Prometheus
(``scripts/prometheus up``, its ``/api/v1/parse_query``) and selects only series that
exist: ones the running platform (``tidings up``) or the running operator declare on
their ``/metrics``, or ones the chart's recording rules write. A renamed metric or a
typo in a dashboard fails here, not on an SRE's screen."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

import procs
from dashboard_support import queries
from operator_support import install_crds, running_operator
from prometheus_support import exposed_series, prometheus_env, recorded_names, selected_series
from servers import KubeEnv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prometheus_url() -> str:
    return prometheus_env("up")["TIDINGS_PROMETHEUS_URL"]


async def platform_series(tmp_path: Path) -> set[str]:
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    async with procs.running(["up"], data, log) as proc, httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{proc.ops_url}/metrics")
    r.raise_for_status()
    return exposed_series(r.text)


def operator_series(kube_env: KubeEnv, tmp_path: Path) -> set[str]:
    install_crds(kube_env)
    namespace = f"dash-{uuid.uuid4().hex[:8]}"  # nothing to reconcile: metrics only
    with running_operator(kube_env, [namespace], tmp_path / "operator.log") as op:
        r = httpx.get(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=10)
    r.raise_for_status()
    return exposed_series(r.text)


async def test_every_dashboard_query_parses_and_names_exported_series(
    prometheus_url: str, kube_env: KubeEnv, tmp_path: Path
) -> None:
    platform = await platform_series(tmp_path)
    operator = operator_series(kube_env, tmp_path)
    # The scrapes are what they should be: each side's own families, and not empty.
    assert "tidings_messages_accepted_total" in platform
    assert "tidings_operator_reconcile_total" in operator
    known = platform | operator | recorded_names()
    found = queries()
    assert len(found) > 40
    unknown = {}
    for query in found:
        names = selected_series(prometheus_url, query.promql())
        assert names, query  # every query reads at least one series
        if missing := names - known:
            unknown[f"{query.dashboard}: {query.panel}"] = sorted(missing)
    assert not unknown, unknown
