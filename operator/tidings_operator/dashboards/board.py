"""A thin layer over the Grafana Foundation SDK's builders: every Tidings dashboard has
the same data source and region variables, numbered panels and Prometheus queries, so
each dashboard module only says what it shows.

Queries name the region through ``$region`` (``region=~"$region"``: several regions or
all of them) and rates through ``$__rate_interval``; ``tests/e2e/test_dashboard_queries.py``
replaces both and checks every query against a real Prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.common import (
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
"""Every panel reads the data source the viewer picks (the ``datasource`` variable)."""

REGION = 'region=~"$region"'
"""The label matcher of the region variable (multi-value, "All" matching every region)."""

WIDTH = 24
"""Grafana's grid is 24 columns wide."""

REF_IDS = "ABCDEFGH"
"""Each query of a panel is named by one letter, as Grafana's editor names them."""


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and the legend of its series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Limit:
    """A threshold drawn on a panel (a line on a graph, a colour on a stat)."""

    value: float
    color: str = "red"


def _thresholds(limit: Limit | None) -> dashboard.ThresholdsConfig:
    steps = [Threshold(value=None, color="green")]
    if limit is not None:
        steps.append(Threshold(value=limit.value, color=limit.color))
    return dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def _targets(
    queries: Sequence[Query], *, instant: bool = False
) -> list[cogbuilder.Builder[Dataquery]]:
    if len(queries) > len(REF_IDS):
        raise ValueError(f"at most {len(REF_IDS)} queries a panel, got {len(queries)}")
    targets: list[cogbuilder.Builder[Dataquery]] = []
    for ref, query in zip(REF_IDS, queries, strict=False):
        target = prometheus.Dataquery().expr(query.expr).ref_id(ref)
        if query.legend:
            target = target.legend_format(query.legend)
        if instant:
            target = target.instant().format(PromQueryFormat.TABLE)
        targets.append(target)
    return targets


class Board:
    """One dashboard being built: rows, then panels laid out left to right."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self._next_id = 1
        self._builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["tidings"])
            .editable()
            .refresh("30s")
            .time("now-1h", "now")
            .tooltip(DashboardCursorSync.CROSSHAIR)
            .with_variable(
                dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
            )
        )

    def region_variable(self, query: str) -> Board:
        """The ``region`` variable, its values read by ``query`` (a ``label_values``)."""
        self._builder = self._builder.with_variable(
            dashboard.QueryVariable("region")
            .label("Region")
            .datasource(DATASOURCE)
            .query(query)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .sort(VariableSort.ALPHABETICAL_ASC)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        return self

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def row(self, title: str) -> Board:
        self._builder = self._builder.with_row(dashboard.Row(title).id(self._id()))
        return self

    def graph(
        self,
        title: str,
        description: str,
        unit: str,
        *queries: Query,
        width: int = 12,
        limit: Limit | None = None,
        stacked: bool = False,
    ) -> Board:
        """A time series panel; ``limit`` draws its threshold as a dashed line."""
        panel = (
            timeseries.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .unit(unit)
            .height(8)
            .span(width)
            .targets(_targets(queries))
            .legend(_legend())
            .thresholds(_thresholds(limit))
            .fill_opacity(30 if stacked else 10)
        )
        if limit is not None:
            panel = panel.thresholds_style(_thresholds_style(GraphThresholdsStyleMode.DASHED)).min(
                0
            )
        if stacked:
            panel = panel.stacking(_stacked())
        self._builder = self._builder.with_panel(panel)
        return self

    def stat(
        self,
        title: str,
        description: str,
        unit: str,
        query: Query,
        *,
        width: int = 6,
        limit: Limit | None = None,
    ) -> Board:
        """A single number (or one per series), red from ``limit`` on."""
        panel = (
            stat.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .unit(unit)
            .height(4)
            .span(width)
            .targets(_targets([query]))
            .thresholds(_thresholds(limit))
        )
        self._builder = self._builder.with_panel(panel)
        return self

    def table(self, title: str, description: str, query: Query, *, width: int = WIDTH) -> Board:
        """The series of an instant query, one row each (labels as columns)."""
        panel = (
            table.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .height(8)
            .span(width)
            .targets(_targets([query], instant=True))
        )
        self._builder = self._builder.with_panel(panel)
        return self

    def json(self) -> str:
        """The dashboard as the JSON Grafana imports (stable: keys sorted, one trailing
        newline, so the committed files diff cleanly)."""
        model = self._builder.build()
        return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def _legend() -> common_builders.VizLegendOptions:
    """A table under the graph with each series' last and highest value."""
    return (
        common_builders.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def _thresholds_style(mode: GraphThresholdsStyleMode) -> common_builders.GraphThresholdsStyleConfig:
    return common_builders.GraphThresholdsStyleConfig().mode(mode)


def _stacked() -> common_builders.StackingConfig:
    return common_builders.StackingConfig().mode(StackingMode.NORMAL)
