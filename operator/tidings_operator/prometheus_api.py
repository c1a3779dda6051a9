"""What ``kubectl tidings status`` asks a Prometheus: open WebSockets per region and the
alerts of one namespace, over its HTTP API (``/api/v1/query``, ``/api/v1/alerts``).

Series and alerts are matched by the ``namespace`` and ``region`` labels the chart's
PodMonitors and rules give them. A Prometheus that does not answer, or answers with an
error, gives a view with ``error`` set: the screen still shows what the API server knows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import httpx

from tidings_operator.status_screen import Alert, PrometheusView, parse_time

TIMEOUT = 10.0


def sockets_query(namespace: str) -> str:
    escaped = namespace.replace("\\", "\\\\").replace('"', '\\"')
    return f'sum by (region) (tidings_ws_connections{{namespace="{escaped}"}})'


def sockets_by_region(body: Mapping[str, Any]) -> dict[str, float]:
    """``{region: sockets}`` from an instant query's answer."""
    found = {}
    for sample in body.get("data", {}).get("result") or []:
        region = sample.get("metric", {}).get("region")
        if region:
            found[str(region)] = float(sample["value"][1])
    return found


def namespace_alerts(
    body: Mapping[str, Any], namespace: str, regions: Collection[str]
) -> list[Alert]:
    """The alerts of ``namespace``: labelled with it, or with no namespace label but
    the region label of one of its regions."""
    alerts = []
    for raw in body.get("data", {}).get("alerts") or []:
        labels = raw.get("labels") or {}
        region = str(labels.get("region", ""))
        ours = labels.get("namespace") == namespace or (
            "namespace" not in labels and region in regions
        )
        if not ours:
            continue
        annotations = raw.get("annotations") or {}
        alerts.append(
            Alert(
                name=str(labels.get("alertname", "")),
                state=str(raw.get("state", "")),
                severity=str(labels.get("severity", "")),
                region=region,
                summary=str(annotations.get("summary", "")),
                active_at=parse_time(raw.get("activeAt")),
            )
        )
    return alerts


async def read_prometheus(url: str, namespace: str, regions: Collection[str]) -> PrometheusView:
    base = url.rstrip("/")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            query = await http.get("/api/v1/query", params={"query": sockets_query(namespace)})
            query.raise_for_status()
            alerts = await http.get("/api/v1/alerts")
            alerts.raise_for_status()
            sockets, active = query.json(), alerts.json()
    except (httpx.HTTPError, ValueError) as exc:
        return PrometheusView(base, error=f"{type(exc).__name__}: {exc}")
    return PrometheusView(
        base,
        sockets={r: n for r, n in sockets_by_region(sockets).items() if r in regions},
        alerts=namespace_alerts(active, namespace, regions),
    )
