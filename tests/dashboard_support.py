"""The chart's Grafana dashboards as data: their panels and every PromQL query in them,
with Grafana's variables replaced so Prometheus can read them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from servers import ROOT

DASHBOARDS = ROOT / "charts" / "tidings" / "files" / "dashboards"

VARIABLES = {"$__rate_interval": "1m", "$region": ".*"}
"""What Grafana would put in place of each variable the dashboards use."""

_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str

    def promql(self) -> str:
        """The expression as Prometheus gets it from Grafana (variables replaced)."""
        expr = self.expr
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        return expr


def load() -> dict[str, dict[str, Any]]:
    """Each committed dashboard by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' collapsed panels included (rows themselves too)."""
    for panel in board.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def queries() -> list[PanelQuery]:
    """Every panel target's expression, and the selector of every ``label_values``
    variable (the series it reads its values from)."""
    found = []
    for name, board in load().items():
        for panel in panels(board):
            for target in panel.get("targets") or []:
                found.append(PanelQuery(name, panel["title"], target["expr"]))
        for variable in board.get("templating", {}).get("list") or []:
            if variable["type"] != "query":
                continue
            match = _LABEL_VALUES.match(variable["query"])
            assert match, f"{name}: variable {variable['name']}: {variable['query']!r}"
            found.append(PanelQuery(name, f"${variable['name']}", match["selector"]))
    return found
