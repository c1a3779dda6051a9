"""``bench/message_path.py`` on each engine set, small: every phase runs and reports.

Small, but large enough that the server's CPU over a phase is more than one clock tick
(10 ms) of ``/proc/PID/stat``.

Counts and the presence of figures only: times depend on the machine and are never
asserted. The distributed run starts its own gateway, delivery worker and presence
service on the real servers (``scripts/deps``, through the ``distributed_env`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench_support import run_bench
from servers import ENGINE_SETS

pytestmark = pytest.mark.slow

PAIRS, MESSAGES, SOCKETS = 3, 50, 30
SMALL = [
    f"--pairs={PAIRS}",
    f"--messages={MESSAGES}",
    f"--idle={SOCKETS}",
    f"--storm={SOCKETS}",
    "--hold=1",
    "--storm-hold=1",
    "--receipt-grace=10",
    "--timeout=30",
    "--json",
]


async def _bench(engine: str) -> dict[str, Any]:
    return await run_bench("message_path.py", f"--engine={engine}", *SMALL)


def _check_usage(name: str, phase: dict[str, Any], processes: set[str]) -> None:
    cpu = phase["server_cpu_s"]
    assert set(cpu) == processes | {"total"}, (name, cpu)
    assert all(v >= 0 for v in cpu.values()), (name, cpu)
    assert cpu["total"] > 0, (name, cpu)
    assert phase["cpu_per_1k"]["total"] > 0, (name, phase["cpu_per_1k"])
    assert phase["loadgen_cpu_s"] > 0, (name, phase)
    assert set(phase["rss_mib"]) == processes, (name, phase["rss_mib"])
    assert all(v > 0 for v in phase["rss_mib"].values()), (name, phase["rss_mib"])


@pytest.mark.parametrize("engine", ENGINE_SETS)
async def test_message_path_bench_runs_every_phase(
    engine: str, request: pytest.FixtureRequest
) -> None:
    if engine == "distributed":
        request.getfixturevalue("distributed_env")  # the real servers, or the test fails
        processes = {"gateway", "delivery", "presence", "redis", "kafka", "cassandra"}
    else:
        processes = {"server"}
    result = await _bench(engine)

    assert result["config"]["engine"] == engine
    assert result["failures"] == []
    assert list(result["phases"]) == ["live", "offline", "idle", "storm"]
    for name in ("live", "offline"):
        phase = result["phases"][name]
        m = phase["messages"]
        assert m["sent"] == m["delivered"] == PAIRS * MESSAGES, (name, m)
        assert m["lost"] == 0, (name, m)
        assert m["duplicates"] == 0, (name, m)
        assert m["reordered"] == 0, (name, m)
        assert phase["sockets"]["connected"] == 2 * PAIRS, (name, phase["sockets"])
        assert phase["latency_ms"]["p99"] is not None
        _check_usage(name, phase, processes)
    for name in ("idle", "storm"):
        phase = result["phases"][name]
        assert phase["accepted"] == SOCKETS, (name, phase["sockets"])
        _check_usage(name, phase, processes)
    assert result["phases"]["idle"]["rss_per_socket_kib"] is not None
