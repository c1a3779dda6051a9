"""``python -m tidings_operator.dashboards [--check]``: the dashboards' JSON files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tidings_operator.crdgen import REPO, sync
from tidings_operator.dashboards import operator_dashboard, platform_dashboard, region_dashboard
from tidings_operator.dashboards.board import Board

DASHBOARD_DIR = REPO / "charts" / "tidings" / "files" / "dashboards"

BUILDERS: dict[str, Callable[[], Board]] = {
    "platform.json": platform_dashboard.build,
    "regions.json": region_dashboard.build,
    "operator.json": operator_dashboard.build,
}


def rendered() -> dict[str, str]:
    """Every dashboard's file name and JSON text."""
    return {name: build().json() for name, build in BUILDERS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidings_operator.dashboards")
    parser.add_argument("--out", type=Path, default=DASHBOARD_DIR, help="the folder to write")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    stale = sync(args.out, rendered(), check=args.check)
    if args.check and stale:
        names = [path.name for path in stale]
        print(
            f"stale dashboards (run python -m tidings_operator.dashboards): {names}",
            file=sys.stderr,
        )
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
