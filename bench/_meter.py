"""CPU seconds and RSS of the server processes over a phase, beside the load generator's
own CPU."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _servers

DEPS_MEASURED = ("redis", "kafka", "cassandra")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Sample:
    wall: float
    own: float
    cpu: dict[str, float]
    pids: dict[str, tuple[int, ...]]


class Meter:
    """CPU seconds (``utime + stime`` from ``/proc/PID/stat``) and RSS of the named server
    processes, and this process's own CPU.

    ``procs`` are the processes this run started (fixed pids); ``deps`` names servers of
    ``scripts/deps`` whose pids are read again from its pid files at every sample, as
    other users of the machine may restart them: a process whose pid changed within a
    window is reported as ``restarted`` (its figure is then the new process's CPU)."""

    def __init__(
        self,
        procs: dict[str, list[int]],
        deps: Sequence[str] = (),
        found: dict[str, str] | None = None,
    ) -> None:
        self.procs, self.deps, self.found = procs, tuple(deps), found or {}

    def _pids(self) -> dict[str, tuple[int, ...]]:
        pids = {name: tuple(p) for name, p in self.procs.items()}
        if self.deps:
            live = _servers.deps_pids(self.found, self.deps)
            pids.update({name: (live[name],) if name in live else () for name in self.deps})
        return pids

    def sample(self) -> Sample:
        pids = self._pids()
        cpu = {n: sum(_servers.cpu_seconds(p) or 0.0 for p in ps) for n, ps in pids.items()}
        return Sample(time.perf_counter(), own_cpu(), cpu, pids)

    def rss(self) -> dict[str, float]:
        return {
            name: round(sum(_servers.rss_mib(p) or 0.0 for p in pids), 1)
            for name, pids in self._pids().items()
        }

    @staticmethod
    def delta(start: Sample, end: Sample) -> dict[str, Any]:
        wall = max(end.wall - start.wall, 1e-9)
        cpu: dict[str, float] = {}
        restarted: list[str] = []
        for name, value in end.cpu.items():
            if start.pids.get(name) == end.pids[name]:
                cpu[name] = round(max(0.0, value - start.cpu.get(name, 0.0)), 3)
            else:
                restarted.append(name)
                cpu[name] = round(value, 3)
        total = round(sum(cpu.values()), 3)
        own = round(end.own - start.own, 3)
        return {
            "wall_s": round(wall, 3),
            "server_cpu_s": {**cpu, "total": total},
            "server_cpu_share": round(total / wall, 3),
            "restarted": restarted,
            "loadgen_cpu_s": own,
            "loadgen_cpu_share": round(own / wall, 3),
        }
