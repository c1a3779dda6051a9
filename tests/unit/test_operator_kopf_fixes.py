"""The kopf work-arounds still reach the kopf internals they replace."""

from __future__ import annotations

from importlib import metadata

from kopf._cogs.structs import references
from kopf._core.reactor import observation

from tidings_operator.kopf_fixes import KOPF_VERSION, keep_watching_terminating_namespaces


def terminating(conditions: list[dict[str, str]], kind: str = "MODIFIED") -> dict[str, object]:
    return {
        "type": kind,
        "object": {
            "metadata": {"name": "team-a", "deletionTimestamp": "2026-11-25T12:00:00Z"},
            "status": {"phase": "Terminating", "conditions": conditions},
        },
    }


def test_the_pinned_kopf_is_the_one_the_fixes_were_written_for() -> None:
    assert metadata.version("kopf") == KOPF_VERSION


def test_a_terminating_namespace_stays_watched_until_it_is_really_deleted() -> None:
    keep_watching_terminating_namespaces()
    insights = references.Insights()
    insights.namespaces.add(references.NamespaceName("team-a"))
    first_pass = terminating([{"type": "NamespaceDeletionDiscoveryFailure", "status": "False"}])
    observation.revise_namespaces(
        insights=insights,
        namespaces=["team-*"],
        raw_events=[first_pass],  # type: ignore[list-item]
    )
    assert "team-a" in insights.namespaces  # kopf alone would have stopped watching here
    observation.revise_namespaces(
        insights=insights,
        namespaces=["team-*"],
        raw_events=[terminating([], "DELETED")],  # type: ignore[list-item]
    )
    assert "team-a" not in insights.namespaces
