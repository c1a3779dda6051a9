"""The peering pause reported: kopf's own peering processor, driven through the wrapper
with peering objects as the API server would send them, turns its pause toggle and the
report follows each turn (once), with a message naming who the operator yields to."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._core.engines import peering

from tidings_operator.kopf_fixes import KOPF_VERSION
from tidings_operator.peering_pause import (
    PauseChange,
    blocking_peers,
    pause_change,
    report_peering_pauses,
)

ME = "op-low@host"


def now() -> datetime:
    """kopf judges a peer alive by its ``lastseen`` against the wall clock, so each
    heartbeat is stamped when the test builds it (not when the module was collected:
    the whole suite takes longer than a peer's lifetime)."""
    return datetime.now(UTC)


def heartbeat(priority: int, seen: datetime | None = None, lifetime: int = 60) -> dict[str, Any]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (seen or now()).isoformat()}


def peering_event(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "MODIFIED",
        "object": {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "tidings-operator", "namespace": "team-a"},
            "status": status,
        },
    }


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[PauseChange]:
    """Pause changes reported; kopf's processor is put back afterwards."""
    monkeypatch.setattr(peering, "process_peering_event", peering.process_peering_event)
    seen: list[PauseChange] = []

    async def report(change: PauseChange) -> None:
        seen.append(change)

    report_peering_pauses(report)
    return seen


async def process(status: dict[str, Any], toggle: aiotoggles.Toggle) -> None:
    """kopf's peering processor, called as kopf's orchestration calls it (looked up on
    the module); a set ``stream_pressure`` stops it sleeping until the peers expire."""
    settings = kopf.OperatorSettings()
    settings.peering.name = "tidings-operator"
    settings.peering.priority = 10
    pressure = asyncio.Event()
    pressure.set()
    await peering.process_peering_event(
        raw_event=peering_event(status),  # type: ignore[arg-type]
        namespace="team-a",  # type: ignore[arg-type]
        resource=kopf.Resource("kopf.dev", "v1", "kopfpeerings"),
        identity=peering.Identity(ME),
        settings=settings,
        autoclean=False,
        stream_pressure=pressure,
        conflicts_found=toggle,
    )


def test_written_against_the_pinned_kopf() -> None:
    assert kopf.__version__ == KOPF_VERSION  # type: ignore[attr-defined]


async def test_a_higher_priority_peer_pauses_and_its_leaving_resumes(
    reports: list[PauseChange],
) -> None:
    toggle = aiotoggles.Toggle()
    await process({ME: heartbeat(10), "op-high@host": heartbeat(20)}, toggle)
    assert toggle.is_on()
    (paused,) = reports
    assert (paused.paused, paused.namespace, paused.reason) == (True, "team-a", "OperatorPaused")
    assert not paused.deadlock
    assert "op-high@host (priority 20)" in paused.message
    assert "tidings-operator" in paused.message

    # The same state again (a heartbeat of either): nothing new to tell.
    await process({ME: heartbeat(10), "op-high@host": heartbeat(20)}, toggle)
    assert len(reports) == 1

    await process({ME: heartbeat(10)}, toggle)
    assert toggle.is_off()
    assert [r.reason for r in reports] == ["OperatorPaused", "OperatorResumed"]
    assert not reports[1].paused


async def test_the_start_is_not_a_resume(reports: list[PauseChange]) -> None:
    """kopf starts an operator with a mandatory peering paused until it first reads the
    peering object; acting then is no news."""
    toggle = aiotoggles.Toggle(True)
    assert toggle.is_on()
    await process({ME: heartbeat(10)}, toggle)
    assert toggle.is_off()
    assert reports == []


async def test_lower_priority_and_dead_peers_do_not_pause(reports: list[PauseChange]) -> None:
    toggle = aiotoggles.Toggle()
    long_ago = now() - timedelta(minutes=10)
    await process({ME: heartbeat(10), "low": heartbeat(5), "gone": heartbeat(50, long_ago)}, toggle)
    assert toggle.is_off()
    assert reports == []


async def test_a_peer_of_the_same_priority_is_a_deadlock_worth_a_warning(
    reports: list[PauseChange],
) -> None:
    toggle = aiotoggles.Toggle()
    await process({ME: heartbeat(10), "twin": heartbeat(10)}, toggle)
    assert toggle.is_on()
    (paused,) = reports
    assert paused.deadlock
    assert "same priority" in paused.message


async def test_a_failing_report_does_not_stop_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peering, "process_peering_event", peering.process_peering_event)

    async def broken(change: PauseChange) -> None:
        raise RuntimeError("the API server is away")

    report_peering_pauses(broken)
    toggle = aiotoggles.Toggle()
    await process({ME: heartbeat(10), "op-high@host": heartbeat(20)}, toggle)
    assert toggle.is_on()


def test_blocking_peers_are_the_live_higher_or_equal_ones_highest_first() -> None:
    status = {
        ME: heartbeat(10),
        "a": heartbeat(10),
        "b": heartbeat(30),
        "c": heartbeat(5),
        "d": heartbeat(40, now() - timedelta(minutes=5)),
        "junk": "not a heartbeat",
    }
    assert blocking_peers(status, identity=ME, priority=10) == [("b", 30), ("a", 10)]


def test_the_messages_say_who_and_why() -> None:
    resumed = pause_change(
        False, namespace="", peering_name="p", identity=ME, priority=1, status={}
    )
    assert resumed.reason == "OperatorResumed"
    assert resumed.message.startswith(f"operator {ME} (priority 1) resumed")
    mixed = pause_change(
        True,
        namespace="ns",
        peering_name="p",
        identity=ME,
        priority=1,
        status={"x": heartbeat(1), "y": heartbeat(2)},
    )
    assert not mixed.deadlock  # y acts
    assert "in favour of y (priority 2), x (priority 1)" in mixed.message
