"""``tidings bench load`` against a real ``tidings up``: nothing lost, nothing doubled.

Counts only: the figures (latency, throughput) are printed by the command, never
asserted here, since they depend on the machine.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import procs

pytestmark = pytest.mark.slow


async def _bench_load(url: str, data: Path, *extra: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        procs.TIDINGS,
        "bench",
        "load",
        "--server",
        url,
        "--dev-outbox",
        str(data / "otp-outbox.jsonl"),
        "--clients",
        "4",
        "--rate",
        "10",
        "--duration",
        "3",
        "--groups",
        "1",
        "--json",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-3000:]
    result: dict[str, Any] = json.loads(out)
    return result


def _check_counts(result: dict[str, Any]) -> None:
    """The run's counts (the seed in ``config`` replays the same schedule)."""
    assert result["scheduled"] == 30, result
    assert result["errors"] == 0, result
    assert result["lost"] == 0, result
    assert result["duplicates"] == 0, result
    assert result["delivered"] == result["sent"] == result["scheduled"], result
    copies = result["copies"]
    assert copies["received"] == copies["expected"] > 0, result


@pytest.mark.parametrize("mode", [(), ("--no-e2ee",)], ids=["e2ee", "no-e2ee"])
async def test_bench_load_loses_and_doubles_nothing(tmp_path: Path, mode: tuple[str, ...]) -> None:
    data, log = tmp_path / "data", tmp_path / "tidings.log"
    async with procs.running(["up"], data, log) as server:
        result = await _bench_load(server.url, data, *mode)
    _check_counts(result)
    assert result["config"]["e2ee"] is (not mode)
