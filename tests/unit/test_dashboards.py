"""The Grafana dashboards: the committed JSON is what the code builds, and every panel
sits on the grid with its own id, the chosen data source and well-formed queries. (That
every query parses and names only exported metrics: tests/e2e/test_dashboard_queries.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard_support import DASHBOARDS, VARIABLES, load, panels, queries
from tidings_operator.dashboards.__main__ import main, rendered


def test_committed_dashboards_are_what_the_code_builds() -> None:
    built = rendered()
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(built)
    for name, text in built.items():
        assert (DASHBOARDS / name).read_text() == text, (
            f"{name} is stale: run .venv/bin/python -m tidings_operator.dashboards"
        )


def test_the_check_flag_reports_a_stale_dashboard(tmp_path: Path) -> None:
    out = tmp_path / "dashboards"
    assert main(["--out", str(out)]) == 0
    assert main(["--out", str(out), "--check"]) == 0
    (out / "platform.json").write_text("{}\n")
    assert main(["--out", str(out), "--check"]) == 1
    assert (out / "platform.json").read_text() == "{}\n"


def test_the_three_dashboards_have_distinct_uids_and_the_data_source_variable() -> None:
    boards = load()
    assert sorted(boards) == ["operator.json", "platform.json", "regions.json"]
    assert len({b["uid"] for b in boards.values()}) == 3
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus", name
        for panel in panels(board):
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize("name", ["operator.json", "platform.json", "regions.json"])
def test_panels_have_unique_ids_and_do_not_overlap(name: str) -> None:
    board = load()[name]
    laid = list(panels(board))
    assert len({p["id"] for p in laid}) == len(laid)
    cells: dict[tuple[int, int], str] = {}
    for panel in laid:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_but_rows_has_a_query_a_title_and_a_description() -> None:
    for name, board in load().items():
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            assert panel["title"], (name, panel["id"])
            assert panel.get("description"), (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            assert all(t["expr"] for t in panel["targets"]), (name, panel["title"])


def test_queries_use_only_the_variables_the_dashboards_define() -> None:
    for query in queries():
        assert "$" not in query.promql(), (query, sorted(VARIABLES))


def test_region_dashboards_filter_every_region_labelled_query_by_the_variable() -> None:
    """A viewer who picks one region sees only it: each query of the platform and
    regions dashboards that reads region-labelled platform series filters on $region."""
    for query in queries():
        if query.dashboard == "operator.json" or query.panel.startswith("$"):
            continue
        if "tidings_operator_" in query.expr and "region" not in query.expr:
            continue  # operator-wide series (moves, health changes) carry no region
        assert 'region=~"$region"' in query.expr, query
