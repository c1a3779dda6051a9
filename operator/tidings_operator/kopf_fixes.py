"""Work-arounds for kopf behaviour the operator cannot live with. Each names the kopf
version it was written against (pinned in ``constraints.txt``) and has a unit test that
fails if kopf's internals move, so an upgrade cannot drop it silently."""

from __future__ import annotations

from typing import Any

from kopf._core.reactor import observation

KOPF_VERSION = "1.45.2"


def keep_watching_terminating_namespaces() -> None:
    """kopf stops watching a namespace once it is marked for deletion, its status has
    conditions and none of them is True. The namespace controller's first pass reports
    just that while objects holding our finalizer are still there, and kopf does not look
    again when the blocking conditions turn True a moment later (kopf issues 1088 and
    1225): the finalizer handler never runs and the namespace stays Terminating for ever.
    Here a namespace counts as gone only when its DELETED event arrives."""

    def is_deleted(raw_event: Any) -> bool:
        return bool(raw_event.get("type") == "DELETED")

    observation.is_deleted = is_deleted
